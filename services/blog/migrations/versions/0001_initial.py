"""initial schema of blog: replicas, posts, stats, reactions, comments, tags, categories, reports

Revision ID: 0001
Revises:
"""

from alembic import op
from quark_sdk.outbox import create_event_tables, drop_event_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen DDL (generated once from quark_blog.models; later changes go in new revisions).
STATEMENTS = [
    """CREATE TABLE authors (
    user_id VARCHAR(64) NOT NULL,
    username VARCHAR(64) NOT NULL,
    display_name VARCHAR(200),
    privacy VARCHAR(16) DEFAULT 'public' NOT NULL,
    suspended BOOLEAN DEFAULT false NOT NULL,
    deleted BOOLEAN DEFAULT false NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_authors PRIMARY KEY (user_id)
)""",
    """CREATE INDEX ix_authors_username_lower ON authors (lower(username))""",
    """CREATE TABLE blocks (
    blocker_id VARCHAR(64) NOT NULL,
    blocked_id VARCHAR(64) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_blocks PRIMARY KEY (blocker_id, blocked_id)
)""",
    """CREATE INDEX ix_blocks_blocked ON blocks (blocked_id, blocker_id)""",
    """CREATE TABLE categories (
    slug VARCHAR(64) NOT NULL,
    name VARCHAR(100) NOT NULL,
    description VARCHAR(500) DEFAULT '' NOT NULL,
    post_count INTEGER DEFAULT '0' NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_categories PRIMARY KEY (slug)
)""",
    """CREATE TABLE follows (
    follower_id VARCHAR(64) NOT NULL,
    followee_id VARCHAR(64) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_follows PRIMARY KEY (follower_id, followee_id)
)""",
    """CREATE INDEX ix_follows_followee ON follows (followee_id, follower_id)""",
    """CREATE TABLE reports (
    id UUID NOT NULL,
    target_type VARCHAR(16) NOT NULL,
    target_id UUID NOT NULL,
    reporter_id VARCHAR(64),
    source VARCHAR(8) NOT NULL,
    reason VARCHAR(500) NOT NULL,
    score FLOAT,
    labels VARCHAR(64)[] DEFAULT '{}' NOT NULL,
    run_id VARCHAR(128),
    status VARCHAR(16) DEFAULT 'open' NOT NULL,
    resolution VARCHAR(16),
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    resolved_at TIMESTAMP WITH TIME ZONE,
    resolved_by VARCHAR(64),
    CONSTRAINT pk_reports PRIMARY KEY (id)
)""",
    """CREATE INDEX ix_reports_queue ON reports (created_at, id) WHERE status = 'open'""",
    """CREATE INDEX ix_reports_target ON reports (target_type, target_id)""",
    """CREATE UNIQUE INDEX uq_reports_open_per_reporter ON reports (target_type, target_id, reporter_id) WHERE status = 'open' AND reporter_id IS NOT NULL""",
    """CREATE TABLE tags (
    name VARCHAR(40) NOT NULL,
    post_count INTEGER DEFAULT '0' NOT NULL,
    CONSTRAINT pk_tags PRIMARY KEY (name)
)""",
    """CREATE INDEX ix_tags_count ON tags (post_count DESC, name)""",
    """CREATE TABLE posts (
    id UUID NOT NULL,
    author_id VARCHAR(64) NOT NULL,
    slug VARCHAR(100) NOT NULL,
    title VARCHAR(200) NOT NULL,
    body_format VARCHAR(16) NOT NULL,
    body_source TEXT NOT NULL,
    body_html TEXT NOT NULL,
    body_text TEXT NOT NULL,
    excerpt VARCHAR(600) NOT NULL,
    excerpt_custom BOOLEAN DEFAULT false NOT NULL,
    tags VARCHAR(40)[] DEFAULT '{}' NOT NULL,
    tags_text TEXT DEFAULT '' NOT NULL,
    category VARCHAR(64),
    media_ids VARCHAR(64)[] DEFAULT '{}' NOT NULL,
    visibility VARCHAR(16) NOT NULL,
    status VARCHAR(16) NOT NULL,
    scheduled_at TIMESTAMP WITH TIME ZONE,
    published_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    deleted_at TIMESTAMP WITH TIME ZONE,
    hidden BOOLEAN DEFAULT false NOT NULL,
    hidden_reason VARCHAR(500),
    hidden_by VARCHAR(64),
    hidden_at TIMESTAMP WITH TIME ZONE,
    search TSVECTOR GENERATED ALWAYS AS (setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || setweight(to_tsvector('english'::regconfig, coalesce(tags_text, '')), 'B') || setweight(to_tsvector('english'::regconfig, coalesce(body_text, '')), 'C')) STORED NOT NULL,
    CONSTRAINT pk_posts PRIMARY KEY (id),
    CONSTRAINT fk_posts_category_categories FOREIGN KEY(category) REFERENCES categories (slug)
)""",
    """CREATE INDEX ix_posts_author_created ON posts (author_id, created_at DESC, id DESC) WHERE deleted_at IS NULL""",
    """CREATE INDEX ix_posts_author_published ON posts (author_id, published_at DESC, id DESC) WHERE status = 'published' AND deleted_at IS NULL""",
    """CREATE INDEX ix_posts_category ON posts (category, published_at DESC, id DESC) WHERE status = 'published' AND deleted_at IS NULL""",
    """CREATE INDEX ix_posts_media ON posts USING gin (media_ids)""",
    """CREATE INDEX ix_posts_public ON posts (published_at DESC, id DESC) WHERE status = 'published' AND deleted_at IS NULL AND NOT hidden AND visibility = 'public'""",
    """CREATE INDEX ix_posts_scheduled ON posts (scheduled_at) WHERE status = 'scheduled' AND deleted_at IS NULL""",
    """CREATE INDEX ix_posts_search ON posts USING gin (search)""",
    """CREATE INDEX ix_posts_tags ON posts USING gin (tags)""",
    """CREATE UNIQUE INDEX uq_posts_author_slug ON posts (author_id, slug) WHERE deleted_at IS NULL""",
    """CREATE TABLE comments (
    id UUID NOT NULL,
    post_id UUID NOT NULL,
    author_id VARCHAR(64),
    parent_id UUID,
    path VARCHAR(2000) COLLATE "C" NOT NULL,
    depth INTEGER NOT NULL,
    body_source TEXT NOT NULL,
    body_html TEXT NOT NULL,
    body_text TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    edited BOOLEAN DEFAULT false NOT NULL,
    deleted_at TIMESTAMP WITH TIME ZONE,
    hidden BOOLEAN DEFAULT false NOT NULL,
    hidden_reason VARCHAR(500),
    hidden_by VARCHAR(64),
    hidden_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT pk_comments PRIMARY KEY (id),
    CONSTRAINT fk_comments_post_id_posts FOREIGN KEY(post_id) REFERENCES posts (id) ON DELETE CASCADE,
    CONSTRAINT fk_comments_parent_id_comments FOREIGN KEY(parent_id) REFERENCES comments (id) ON DELETE CASCADE
)""",
    """CREATE INDEX ix_comments_author ON comments (author_id)""",
    """CREATE INDEX ix_comments_parent ON comments (parent_id)""",
    """CREATE INDEX ix_comments_post_path ON comments (post_id, path)""",
    """CREATE TABLE post_stats (
    post_id UUID NOT NULL,
    comment_count INTEGER DEFAULT '0' NOT NULL,
    reactions JSONB DEFAULT '{}'::jsonb NOT NULL,
    CONSTRAINT pk_post_stats PRIMARY KEY (post_id),
    CONSTRAINT fk_post_stats_post_id_posts FOREIGN KEY(post_id) REFERENCES posts (id) ON DELETE CASCADE
)""",
    """CREATE TABLE reactions (
    post_id UUID NOT NULL,
    user_id VARCHAR(64) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_reactions PRIMARY KEY (post_id, user_id, kind),
    CONSTRAINT fk_reactions_post_id_posts FOREIGN KEY(post_id) REFERENCES posts (id) ON DELETE CASCADE
)""",
    """CREATE INDEX ix_reactions_user ON reactions (user_id)""",
]

TABLES = ['reactions', 'post_stats', 'comments', 'posts', 'tags', 'reports', 'follows', 'categories', 'blocks', 'authors']


def upgrade() -> None:
    create_event_tables(op.get_bind())
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    drop_event_tables(op.get_bind())
