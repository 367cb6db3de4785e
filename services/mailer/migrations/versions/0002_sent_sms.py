"""sent_sms: the SMS delivered (auth's phone codes), for operators; never the text

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sent_sms",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("recipient", sa.String(length=32), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_sent_sms")),
    )
    op.create_index(op.f("ix_sent_sms_user_id"), "sent_sms", ["user_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_sent_sms_user_id"), table_name="sent_sms")
    op.drop_table("sent_sms")
