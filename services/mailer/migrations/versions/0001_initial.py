"""initial schema of the mailer: sent_mail, plus the SDK's outbox and inbox tables

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
    op.create_table(
        "sent_mail",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_sent_mail")),
    )
    op.create_index(op.f("ix_sent_mail_user_id"), "sent_mail", ["user_id"])
    create_event_tables(op.get_bind())


def downgrade() -> None:
    drop_event_tables(op.get_bind())
    op.drop_index(op.f("ix_sent_mail_user_id"), table_name="sent_mail")
    op.drop_table("sent_mail")
