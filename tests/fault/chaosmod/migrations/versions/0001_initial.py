"""initial: event tables, the produced keys, the applied keys (unique) and the side-effect counter

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
    op.create_table("produced", sa.Column("key", sa.String(64), primary_key=True))
    op.create_table(
        "applied",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("applies", sa.Integer, nullable=False),
        sa.UniqueConstraint("key", name="uq_applied_key"),
    )
    op.create_table(
        "counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("counters")
    op.drop_table("applied")
    op.drop_table("produced")
    drop_event_tables(op.get_bind())
