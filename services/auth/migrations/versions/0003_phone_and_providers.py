"""phone numbers (SMS codes) and external identities (OIDC / OAuth2 providers); email and password optional

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
    op.alter_column("users", "email", existing_type=sa.String(254), nullable=True)
    op.alter_column("users", "password_hash", existing_type=sa.String(100), nullable=True)
    op.add_column("users", sa.Column("phone", sa.String(16), nullable=True))
    op.add_column("users", sa.Column("phone_verified_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("users", sa.Column("phone_mfa", sa.Boolean, server_default=sa.false(), nullable=False))
    op.create_index("uq_users_phone_verified", "users", ["phone"], unique=True,
                    postgresql_where=sa.text("phone_verified_at IS NOT NULL"))
    op.create_table(
        "external_identities",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("email_verified", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_external_identities_user_id_users",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_external_identities"),
        sa.UniqueConstraint("provider", "subject", name="uq_external_identities_provider_subject"),
    )
    op.create_index("ix_external_identities_user_id", "external_identities", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_external_identities_user_id", table_name="external_identities")
    op.drop_table("external_identities")
    op.drop_index("uq_users_phone_verified", table_name="users")
    op.drop_column("users", "phone_mfa")
    op.drop_column("users", "phone_verified_at")
    op.drop_column("users", "phone")
    # Accounts without a password or an email cannot go back: the old schema has no room for them.
    op.execute("DELETE FROM users WHERE email IS NULL OR password_hash IS NULL")
    op.alter_column("users", "password_hash", existing_type=sa.String(100), nullable=False)
    op.alter_column("users", "email", existing_type=sa.String(254), nullable=False)
