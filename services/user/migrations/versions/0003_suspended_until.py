"""profiles.suspended_until: the end of a timed suspension (null = indefinite), lifted by a background job

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("profiles", sa.Column("suspended_until", sa.DateTime(timezone=True), nullable=True))
    # The expiry job's scan: only suspended accounts with an end.
    op.create_index("ix_profiles_suspended_until", "profiles", ["suspended_until"],
                    postgresql_where=sa.text("suspended AND suspended_until IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_profiles_suspended_until", table_name="profiles")
    op.drop_column("profiles", "suspended_until")
