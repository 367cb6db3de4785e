"""initial: event tables and the posts the module has seen

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from quark_sdk.outbox import create_event_tables, drop_event_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_event_tables(op.get_bind())
    op.create_table(
        "seen",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("post_id", sa.String(64), nullable=False),
        sa.Column("times", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("seen")
    drop_event_tables(op.get_bind())
