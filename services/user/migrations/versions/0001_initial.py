"""initial schema of the user service: profiles, follows, follow requests, blocks, mutes, activity, media

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


def _now() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)


def _edge(table: str, left: str, right: str) -> None:
    """A directed relation between two profiles, ordered by its sequence number."""
    op.create_table(
        table,
        sa.Column(left, sa.Uuid(), nullable=False),
        sa.Column(right, sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        _now(),
        sa.CheckConstraint(f"{left} <> {right}", name=op.f(f"ck_{table}_not_self")),
        sa.ForeignKeyConstraint([left], ["profiles.user_id"], name=op.f(f"fk_{table}_{left}_profiles"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint([right], ["profiles.user_id"], name=op.f(f"fk_{table}_{right}_profiles"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint(left, right, name=op.f(f"pk_{table}")),
        sa.UniqueConstraint("seq", name=op.f(f"uq_{table}_seq")),
    )


def upgrade() -> None:
    create_event_tables(op.get_bind())
    op.create_table(
        "profiles",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=True),
        sa.Column("bio", sa.Text(), server_default="", nullable=False),
        sa.Column("links", JSONB, server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("locale", sa.String(35), nullable=True),
        sa.Column("privacy", sa.String(16), server_default="public", nullable=False),
        sa.Column("avatar_media_id", sa.String(64), nullable=True),
        sa.Column("avatar_variants", JSONB, nullable=True),
        sa.Column("avatar_pending_media_id", sa.String(64), nullable=True),
        sa.Column("roles", JSONB, server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("verified", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("suspended", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("suspended_reason", sa.String(500), nullable=True),
        sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("suspended_by", sa.String(64), nullable=True),
        sa.Column("followers_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("following_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        _now(),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("privacy IN ('public', 'followers')", name=op.f("ck_profiles_privacy")),
        sa.CheckConstraint("followers_count >= 0 AND following_count >= 0", name=op.f("ck_profiles_counts")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_profiles")),
        sa.UniqueConstraint("seq", name=op.f("uq_profiles_seq")),
    )
    # text_pattern_ops: equality and `LIKE 'prefix%'` (search) under any collation.
    op.create_index("uq_profiles_username_lower", "profiles",
                    [sa.literal_column("lower(username)").label("username_lower")], unique=True,
                    postgresql_ops={"username_lower": "text_pattern_ops"})
    op.create_index("ix_profiles_display_name_prefix", "profiles",
                    [sa.literal_column("lower(display_name)").label("display_name_lower")], unique=False,
                    postgresql_ops={"display_name_lower": "text_pattern_ops"})

    _edge("follows", "follower_id", "followee_id")
    op.create_index("ix_follows_followee_seq", "follows", ["followee_id", "seq"])
    op.create_index("ix_follows_follower_seq", "follows", ["follower_id", "seq"])
    _edge("follow_requests", "requester_id", "target_id")
    op.create_index("ix_follow_requests_target_seq", "follow_requests", ["target_id", "seq"])
    _edge("blocks", "blocker_id", "blocked_id")
    op.create_index("ix_blocks_blocker_seq", "blocks", ["blocker_id", "seq"])
    op.create_index("ix_blocks_blocked_id", "blocks", ["blocked_id"])
    _edge("mutes", "muter_id", "muted_id")
    op.create_index("ix_mutes_muter_seq", "mutes", ["muter_id", "seq"])
    op.create_index("ix_mutes_muted_id", "mutes", ["muted_id"])

    op.create_table(
        "activity",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("target_id", sa.Uuid(), nullable=True),
        sa.Column("data", JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False),
        _now(),
        sa.ForeignKeyConstraint(["target_id"], ["profiles.user_id"], name=op.f("fk_activity_target_id_profiles"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_id"], ["profiles.user_id"], name=op.f("fk_activity_user_id_profiles"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_activity")),
    )
    op.create_index("ix_activity_user_seq", "activity", ["user_id", "seq"])
    op.create_index("ix_activity_target_id", "activity", ["target_id"],
                    postgresql_where=sa.text("target_id IS NOT NULL"))
    op.create_index("ix_activity_created_at", "activity", ["created_at"])

    op.create_table(
        "media_assets",
        sa.Column("media_id", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("variants", JSONB, nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("media_id", name=op.f("pk_media_assets")),
    )
    op.create_index(op.f("ix_media_assets_owner_id"), "media_assets", ["owner_id"])


def downgrade() -> None:
    for table in ("media_assets", "activity", "mutes", "blocks", "follow_requests", "follows", "profiles"):
        op.drop_table(table)
    drop_event_tables(op.get_bind())
