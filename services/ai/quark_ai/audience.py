"""Who may see whose posts: the blog's visibility rules, applied to what the AI service suggests.

The blog lists a post to a viewer when the post is published, not hidden and not deleted, its author
is neither suspended nor deleted, no block stands between the two (either way), and either the post
is public on a public profile, or it is not private and the viewer follows the author. The AI
service keeps the facts those rules need from events (quark.user.blocked / unblocked, muted /
unmuted, profile_updated, suspended, deleted; quark.post.*) and applies the same rule to every
suggestion it makes: "you may like" (per viewer) and related posts (to anyone, so public ones only).
A mute is honoured too: a muted author is never suggested to the muter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from quark_ai.models import Author, Block, Follow, Mute


@dataclass(frozen=True)
class Audience:
    """One viewer's view (viewer None: anyone, signed in or not); `can_see` is the blog's rule."""

    viewer: str | None
    followees: frozenset[str] = field(default_factory=frozenset)
    avoided: frozenset[str] = frozenset()  # blocked either way, or muted by the viewer
    closed: frozenset[str] = frozenset()  # followers-only profiles
    gone: frozenset[str] = frozenset()  # suspended or deleted authors

    def can_see(self, author_id: str, visibility: str) -> bool:
        if author_id == self.viewer:
            return True
        if author_id in self.gone or author_id in self.avoided:
            return False
        if visibility == "public" and author_id not in self.closed:
            return True
        return visibility != "private" and author_id in self.followees


async def _restricted_authors(session: AsyncSession) -> tuple[frozenset[str], frozenset[str]]:
    """(followers-only authors, suspended or deleted authors): few rows, every other author is open."""
    rows = (
        await session.execute(
            select(Author.user_id, Author.privacy, Author.suspended, Author.deleted).where(
                or_(Author.privacy != "public", Author.suspended.is_(True), Author.deleted.is_(True))
            )
        )
    ).all()
    closed = frozenset(r.user_id for r in rows if r.privacy != "public")
    gone = frozenset(r.user_id for r in rows if r.suspended or r.deleted)
    return closed, gone


async def audience_of(session: AsyncSession, viewer: str) -> Audience:
    followees = frozenset((await session.scalars(select(Follow.followee_id).where(Follow.follower_id == viewer))).all())
    blocked = (
        await session.execute(
            select(Block.blocker_id, Block.blocked_id).where(
                or_(Block.blocker_id == viewer, Block.blocked_id == viewer)
            )
        )
    ).all()
    muted = (await session.scalars(select(Mute.muted_id).where(Mute.muter_id == viewer))).all()
    avoided = {b.blocked_id if b.blocker_id == viewer else b.blocker_id for b in blocked} | set(muted)
    closed, gone = await _restricted_authors(session)
    return Audience(viewer, followees, frozenset(avoided), closed, gone)


async def anyone(session: AsyncSession) -> Audience:
    """The audience of a suggestion shown to anyone (related posts): public posts of open profiles."""
    closed, gone = await _restricted_authors(session)
    return Audience(None, closed=closed, gone=gone)


# --------------------------------------------------------------------------- kept current from events


async def _upsert_author(session: AsyncSession, user_id: str, **values: object) -> None:
    stmt = insert(Author).values(user_id=user_id, **values)
    await session.execute(stmt.on_conflict_do_update(index_elements=[Author.user_id], set_=values))


async def set_privacy(session: AsyncSession, user_id: str, privacy: str) -> None:
    await _upsert_author(session, user_id, privacy=privacy[:16])


async def set_suspended(session: AsyncSession, user_id: str, suspended: bool) -> None:
    await _upsert_author(session, user_id, suspended=suspended)


async def mark_deleted(session: AsyncSession, user_id: str) -> None:
    """Keep only the fact (no name, no text): a post event arriving late must not bring their posts back."""
    await _upsert_author(session, user_id, deleted=True)
    await session.execute(delete(Block).where(or_(Block.blocker_id == user_id, Block.blocked_id == user_id)))
    await session.execute(delete(Mute).where(or_(Mute.muter_id == user_id, Mute.muted_id == user_id)))


async def is_deleted(session: AsyncSession, user_id: str) -> bool:
    return bool(await session.scalar(select(Author.deleted).where(Author.user_id == user_id)))


async def block(session: AsyncSession, blocker_id: str, blocked_id: str, *, on: bool) -> None:
    """A block also ends follows both ways (the user service announces that too; this does not depend on it)."""
    if on:
        await session.execute(
            insert(Block).values(blocker_id=blocker_id, blocked_id=blocked_id).on_conflict_do_nothing()
        )
        await session.execute(
            delete(Follow).where(
                or_(
                    (Follow.follower_id == blocker_id) & (Follow.followee_id == blocked_id),
                    (Follow.follower_id == blocked_id) & (Follow.followee_id == blocker_id),
                )
            )
        )
    else:
        await session.execute(delete(Block).where(Block.blocker_id == blocker_id, Block.blocked_id == blocked_id))


async def mute(session: AsyncSession, muter_id: str, muted_id: str, *, on: bool) -> None:
    if on:
        await session.execute(insert(Mute).values(muter_id=muter_id, muted_id=muted_id).on_conflict_do_nothing())
    else:
        await session.execute(delete(Mute).where(Mute.muter_id == muter_id, Mute.muted_id == muted_id))
