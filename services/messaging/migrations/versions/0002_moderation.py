"""moderation: messages hidden by a moderator's decision, and participants' reports of messages

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
    op.add_column("messages", sa.Column("hidden_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "message_reports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("reporter_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], name=op.f("fk_message_reports_message_id_messages"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_reports")),
    )
    op.create_index("uq_message_reports_open", "message_reports", ["message_id", "reporter_id"], unique=True,
                    postgresql_where=sa.text("status = 'open'"))
    op.create_index("ix_message_reports_message", "message_reports", ["message_id"])


def downgrade() -> None:
    op.drop_table("message_reports")
    op.drop_column("messages", "hidden_at")
