"""initial schema of moderation: cases, signals, decisions, audit_log, plus the SDK's outbox and inbox tables

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from quark_sdk.outbox import create_event_tables, drop_event_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("module", sa.String(length=32), nullable=False),
        sa.Column("author_id", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("context", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("reports", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("flags", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_score", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.CheckConstraint("kind IN ('post', 'comment', 'chat_message', 'media', 'profile')", name=op.f("ck_cases_kind")),
        sa.CheckConstraint("state IN ('open', 'dismissed', 'actioned')", name=op.f("ck_cases_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
    )
    op.create_index("uq_cases_open_target", "cases", ["kind", "target_id"], unique=True,
                    postgresql_where=sa.text("state = 'open'"))
    op.create_index("ix_cases_queue", "cases", ["state", "created_at", "id"])
    op.create_index("ix_cases_target", "cases", ["kind", "target_id"])
    op.create_table(
        "signals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("reporter_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=1000), server_default="", nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("labels", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"),
                  nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("source IN ('user', 'ai')", name=op.f("ck_signals_source")),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_signals_case_id_cases"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
        sa.UniqueConstraint("source", "external_id", name="uq_signals_external"),
    )
    op.create_index(op.f("ix_signals_case_id"), "signals", ["case_id"])
    op.create_index("uq_signals_reporter", "signals", ["case_id", "reporter_id"], unique=True,
                    postgresql_where=sa.text("reporter_id IS NOT NULL"))
    op.create_table(
        "decisions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("moderator_id", sa.String(length=64), nullable=False),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("action IN ('dismiss', 'hide', 'delete', 'warn', 'suspend')",
                           name=op.f("ck_decisions_action")),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_decisions_case_id_cases"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
        sa.UniqueConstraint("case_id", "action", name="uq_decisions_case_action"),
    )
    op.create_index(op.f("ix_decisions_case_id"), "decisions", ["case_id"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("module", sa.String(length=32), nullable=False),
        sa.Column("target_kind", sa.String(length=32), nullable=True),
        sa.Column("target_id", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_log_event_id")),
    )
    op.create_index("ix_audit_actor", "audit_log", ["actor_id", "seq"])
    op.create_index("ix_audit_action", "audit_log", ["action", "seq"])
    op.create_index("ix_audit_target", "audit_log", ["target_id", "seq"])
    op.create_index("ix_audit_at", "audit_log", ["at"])
    create_event_tables(op.get_bind())


def downgrade() -> None:
    drop_event_tables(op.get_bind())
    op.drop_table("audit_log")
    op.drop_table("decisions")
    op.drop_table("signals")
    op.drop_table("cases")
