"""the audience replica: authors' privacy and standing, blocks and mutes (recommendations obey the blog's rules)

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
        "authors",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("privacy", sa.String(16), server_default="public", nullable=False),
        sa.Column("suspended", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("deleted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_authors")),
    )
    op.create_table(
        "blocks",
        sa.Column("blocker_id", sa.String(64), nullable=False),
        sa.Column("blocked_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("blocker_id", "blocked_id", name=op.f("pk_blocks")),
    )
    op.create_index("ix_blocks_blocked", "blocks", ["blocked_id"])
    op.create_table(
        "mutes",
        sa.Column("muter_id", sa.String(64), nullable=False),
        sa.Column("muted_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("muter_id", "muted_id", name=op.f("pk_mutes")),
    )


def downgrade() -> None:
    op.drop_table("mutes")
    op.drop_index("ix_blocks_blocked", table_name="blocks")
    op.drop_table("blocks")
    op.drop_table("authors")
