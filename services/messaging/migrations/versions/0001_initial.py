"""initial schema of the messaging service

Revision ID: 0001
Revises:
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from quark_sdk.outbox import create_event_tables, drop_event_tables

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('blocks',
    sa.Column('blocker_id', sa.Uuid(), nullable=False),
    sa.Column('blocked_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('blocker_id', 'blocked_id', name=op.f('pk_blocks'))
    )
    op.create_table('conversations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=True),
    sa.Column('owner_id', sa.Uuid(), nullable=True),
    sa.Column('direct_key', sa.String(length=80), nullable=True),
    sa.Column('last_seq', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('member_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_activity_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('direct', 'group', 'channel')", name=op.f('ck_conversations_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversations')),
    sa.UniqueConstraint('direct_key', name=op.f('uq_conversations_direct_key'))
    )
    op.create_index('ix_conversations_channels', 'conversations', ['kind', 'last_activity_at', 'id'], unique=False, postgresql_where=sa.text("kind = 'channel'"))
    op.create_table('notifications',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('actor_id', sa.Uuid(), nullable=True),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('group_key', sa.String(length=120), nullable=True),
    sa.Column('count', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('read_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications'))
    )
    op.create_index('ix_notifications_actor', 'notifications', ['actor_id'], unique=False)
    op.create_index('ix_notifications_user', 'notifications', ['user_id', 'id'], unique=False)
    op.create_index('uq_notifications_unread_group', 'notifications', ['user_id', 'group_key'], unique=True, postgresql_where=sa.text('read_at IS NULL AND group_key IS NOT NULL'))
    op.create_table('users',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_users'))
    )
    op.create_index('ix_users_username_lower', 'users', [sa.literal_column('lower(username)').label('username_lower')], unique=False)
    op.create_table('members',
    sa.Column('conversation_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('last_read_seq', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('joined_seq', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('joined_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("role IN ('owner', 'admin', 'member', 'subscriber')", name=op.f('ck_members_role')),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_members_conversation_id_conversations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('conversation_id', 'user_id', name=op.f('pk_members'))
    )
    op.create_index('ix_members_user', 'members', ['user_id'], unique=False)
    op.create_table('messages',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('conversation_id', sa.Uuid(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('sender_id', sa.Uuid(), nullable=True),
    sa.Column('body', sa.Text(), server_default='', nullable=False),
    sa.Column('reply_to_id', sa.BigInteger(), nullable=True),
    sa.Column('attachments', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('mentions', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('client_msg_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('edited_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_messages_conversation_id_conversations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages')),
    sa.UniqueConstraint('conversation_id', 'seq', name='uq_messages_conversation_seq')
    )
    op.create_index('ix_messages_sender', 'messages', ['sender_id'], unique=False)
    op.create_index('uq_messages_client_id', 'messages', ['sender_id', 'client_msg_id'], unique=True, postgresql_where=sa.text('client_msg_id IS NOT NULL'))
    create_event_tables(op.get_bind())


def downgrade() -> None:
    drop_event_tables(op.get_bind())
    op.drop_index('uq_messages_client_id', table_name='messages', postgresql_where=sa.text('client_msg_id IS NOT NULL'))
    op.drop_index('ix_messages_sender', table_name='messages')
    op.drop_table('messages')
    op.drop_index('ix_members_user', table_name='members')
    op.drop_table('members')
    op.drop_index('ix_users_username_lower', table_name='users')
    op.drop_table('users')
    op.drop_index('uq_notifications_unread_group', table_name='notifications', postgresql_where=sa.text('read_at IS NULL AND group_key IS NOT NULL'))
    op.drop_index('ix_notifications_user', table_name='notifications')
    op.drop_index('ix_notifications_actor', table_name='notifications')
    op.drop_table('notifications')
    op.drop_index('ix_conversations_channels', table_name='conversations', postgresql_where=sa.text("kind = 'channel'"))
    op.drop_table('conversations')
    op.drop_table('blocks')
