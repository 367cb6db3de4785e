"""initial schema of the AI service: agent runs, moderation results, documents, reactions, follows, drafts

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

JSONB = postgresql.JSONB(astext_type=sa.Text())
EMPTY_LIST = sa.text("'[]'::jsonb")


def _ts(name: str, nullable: bool = False, default: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("now()") if default else None,
                     nullable=nullable)


def upgrade() -> None:
    create_event_tables(op.get_bind())

    op.create_table(
        "agent_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agent", sa.String(32), nullable=False),
        sa.Column("input_type", sa.String(32), nullable=False),
        sa.Column("input_id", sa.String(128), nullable=True),
        sa.Column("event_id", sa.String(128), nullable=True),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("error", sa.String(500), nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_runs")),
    )
    op.create_index("ix_agent_runs_created", "agent_runs", ["created_at", "id"])
    op.create_index("ix_agent_runs_agent_created", "agent_runs", ["agent", "created_at", "id"])

    op.create_table(
        "moderation_results",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("target_type", sa.String(16), nullable=False),
        sa.Column("target_id", sa.String(64), nullable=False),
        sa.Column("author_id", sa.String(64), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("classifier_score", sa.Float(), nullable=False),
        sa.Column("labels", JSONB, server_default=EMPTY_LIST, nullable=False),
        sa.Column("rules", JSONB, server_default=EMPTY_LIST, nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("preview", sa.String(300), server_default="", nullable=False),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("decided_by", sa.String(64), nullable=True),
        _ts("decided_at", nullable=True, default=False),
        sa.Column("decision_reason", sa.String(500), nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderation_results")),
    )
    op.create_index("ix_moderation_results_created", "moderation_results", ["created_at", "id"])
    op.create_index("ix_moderation_results_target", "moderation_results", ["target_type", "target_id"])

    op.create_table(
        "documents",
        sa.Column("post_id", sa.String(64), nullable=False),
        sa.Column("author_id", sa.String(64), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("slug", sa.String(200), server_default="", nullable=False),
        sa.Column("excerpt", sa.String(600), server_default="", nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("tags", JSONB, server_default=EMPTY_LIST, nullable=False),
        sa.Column("suggested_tags", JSONB, server_default=EMPTY_LIST, nullable=False),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("hidden", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        _ts("published_at", default=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("post_id", name=op.f("pk_documents")),
    )
    op.create_index("ix_documents_published", "documents", ["published_at"])

    op.create_table(
        "reactions",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("post_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("user_id", "post_id", "kind", name=op.f("pk_reactions")),
    )
    op.create_index("ix_reactions_post", "reactions", ["post_id"])

    op.create_table(
        "follows",
        sa.Column("follower_id", sa.String(64), nullable=False),
        sa.Column("followee_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("follower_id", "followee_id", name=op.f("pk_follows")),
    )

    op.create_table(
        "user_suggestions",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("post_ids", JSONB, nullable=False),
        _ts("generated_at"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_suggestions")),
    )

    op.create_table(
        "drafts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("tone", sa.String(32), nullable=False),
        sa.Column("length", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("tags", JSONB, server_default=EMPTY_LIST, nullable=False),
        sa.Column("generated", sa.Boolean(), nullable=False),
        sa.Column("notice", sa.String(500), nullable=True),
        sa.Column("warnings", JSONB, server_default=EMPTY_LIST, nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("edits", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("blog_post_id", sa.String(64), nullable=True),
        _ts("decided_at", nullable=True, default=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drafts")),
    )
    op.create_index("ix_drafts_user_created", "drafts", ["user_id", "created_at", "id"])


def downgrade() -> None:
    for table in ("drafts", "user_suggestions", "follows", "reactions", "documents", "moderation_results",
                  "agent_runs"):
        op.drop_table(table)
    drop_event_tables(op.get_bind())
