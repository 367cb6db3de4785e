"""Admin API: accounts listing and detail, roles, ending a user's sessions, forcing a password reset.

Every change publishes an audit event carrying `actor_id` (the admin's user id) and the stated `reason`;
the station's audit log is built from those events.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from quark_auth import rbac
from quark_auth.common import (
    get_user,
    log,
    log_email,
    queue_email,
)
from quark_auth.models import LoginSession, User, UserRole
from quark_auth.revocations import revoke_account
from quark_auth.runtime import AuthRuntime
from quark_auth.schemas import (
    AdminSessionOut,
    AdminUserOut,
    PasswordResetForced,
    RoleChanged,
    SessionsRevoked,
    UserOut,
)
from quark_auth.sessions import revoke_all
from quark_sdk.errors import (
    Conflict,
    InvalidInput,
)
from quark_sdk.outbox import add_event
from quark_sdk.pagination import decode_cursor, encode_cursor, page_of


def _like_prefix(text: str) -> str:
    return text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def list_users(session: AsyncSession, *, limit: int, cursor: str | None,
                     q: str | None) -> tuple[list[User], str | None]:
    """Oldest first (keyset on created_at, id): stable while accounts are being added."""
    query = select(User)
    if q:
        pattern = _like_prefix(q.strip())
        query = query.where(or_(func.lower(User.username).like(pattern, escape="\\"),
                                func.lower(User.email).like(pattern, escape="\\")))
    if cursor:
        created, ident = decode_cursor(cursor, (datetime, uuid.UUID))
        query = query.where(tuple_(User.created_at, User.id) > tuple_(created, ident))
    async with session.begin():
        rows = list((await session.scalars(query.order_by(User.created_at, User.id).limit(limit + 1))).all())
    return page_of(rows, limit, lambda r: encode_cursor(r.created_at, r.id))


async def admin_get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    async with session.begin():
        return await get_user(session, user_id)


# A password hash no password matches (bcrypt refuses it as malformed): the mark of a forced reset.
RESET_REQUIRED = "!reset-required"

RECENT_SESSIONS = 20


async def admin_user_detail(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID) -> AdminUserOut:
    """The account with its security state: sessions (newest first), last login, suspension, forced reset."""
    now = rt.now()
    async with session.begin():
        user = await get_user(session, user_id)
        rows = list((await session.scalars(
            select(LoginSession).where(LoginSession.user_id == user.id)
            .order_by(LoginSession.created_at.desc(), LoginSession.id.desc()).limit(RECENT_SESSIONS))).all())
        last_login = await session.scalar(select(func.max(LoginSession.created_at))
                                          .where(LoginSession.user_id == user.id))
        active = await session.scalar(select(func.count()).select_from(LoginSession).where(
            LoginSession.user_id == user.id, LoginSession.revoked_at.is_(None), LoginSession.expires_at > now,
            LoginSession.max_expires_at > now))
    base = UserOut.of(user).model_dump()
    return AdminUserOut(**base, suspended_at=user.suspended_at,
                        password_reset_required=user.password_hash == RESET_REQUIRED,
                        last_login_at=last_login, active_sessions=int(active or 0),
                        sessions=[AdminSessionOut.of(r) for r in rows],
                        role_grants={r.role: r.granted_by for r in user.roles})


def _reason(reason: str | None) -> str | None:
    return (reason or "").strip()[:500] or None


def _check_role(role: str) -> None:
    if role not in rbac.ROLES:
        raise InvalidInput(f"unknown role {role[:32]!r}; roles are {', '.join(rbac.ROLES)}", field="role")


async def grant_role(session: AsyncSession, rt: AuthRuntime, actor_id: str, user_id: uuid.UUID, role: str,
                     reason: str | None = None) -> User:
    """Idempotent: granting a held role changes nothing and emits nothing."""
    _check_role(role)
    async with session.begin():
        user = await get_user(session, user_id)
        if role not in user.role_names:
            user.roles.append(UserRole(role=role, granted_at=rt.now(), granted_by=actor_id))
            await session.flush()
            await add_event(session, RoleChanged(user_id=user.id, username=user.username, role=role, action="granted",
                                                 actor_id=actor_id, reason=_reason(reason)), subject=str(user.id))
    return user


async def revoke_role(session: AsyncSession, rt: AuthRuntime, actor_id: str, user_id: uuid.UUID,
                      role: str, reason: str | None = None) -> User:
    _check_role(role)
    if role == "user":
        raise InvalidInput("every account keeps the 'user' role; delete the account instead", field="role")
    async with session.begin():
        user = await get_user(session, user_id)
        held = next((r for r in user.roles if r.role == role), None)
        if held is not None:
            if role == "admin":
                # Row locks serialise concurrent revocations, so two admins cannot demote each other to zero.
                admins = (await session.scalars(select(UserRole.user_id).where(UserRole.role == "admin")
                                                .with_for_update())).all()
                if len(admins) <= 1:
                    raise Conflict("cannot revoke the last admin", code="last-admin")
            user.roles.remove(held)
            await session.flush()
            await add_event(session, RoleChanged(user_id=user.id, username=user.username, role=role, action="revoked",
                                                 actor_id=actor_id, reason=_reason(reason)), subject=str(user.id))
            # A demoted user must not keep the role: their sessions end (auth's endpoints refuse the access
            # token at once; elsewhere it works until it expires, and it can no longer be refreshed).
            revoked = await revoke_all(session, rt, user.id, reason="role_revoked")
            await add_event(session, SessionsRevoked(user_id=user.id, reason="role_revoked", actor_id=actor_id,
                                                     revoked=revoked, note=_reason(reason)), subject=str(user.id))
    return user


async def admin_revoke_sessions(session: AsyncSession, rt: AuthRuntime, actor_id: str,
                                user_id: uuid.UUID, reason: str | None = None) -> int:
    """An admin ends every session of a user (stolen device, compromised account); audited by an event."""
    async with session.begin():
        user = await get_user(session, user_id)
        revoked = await revoke_all(session, rt, user.id, reason="admin")
        await add_event(session, SessionsRevoked(user_id=user.id, reason="admin", actor_id=actor_id,
                                                 revoked=revoked, note=_reason(reason)), subject=str(user.id))
    log.info("admin %s revoked %d session(s) of user %s", actor_id, revoked, user.id)
    return revoked


async def force_password_reset(session: AsyncSession, rt: AuthRuntime, actor_id: str, user_id: uuid.UUID,
                               reason: str | None = None) -> int:
    """A compromised account: its password stops working, every session ends (refresh refused; access tokens
    are refused everywhere through the revocation list), and a reset link goes to the account's address
    through the usual `quark.auth.email_requested` path. The owner sets a new password from the link.

    Not idempotent on purpose: each call mails a fresh link (the old one stops working) and is audited."""
    if str(user_id) == actor_id:
        raise InvalidInput("change your own password instead of forcing a reset on yourself", field="user_id")
    async with session.begin():
        user = await get_user(session, user_id)
        user.password_hash, user.password_changed_at = RESET_REQUIRED, rt.now()
        revoked = await revoke_all(session, rt, user.id, reason="password_reset_forced")
        await revoke_account(rt, user.id)  # inside the transaction: a failed write to Valkey changes nothing
        note = _reason(reason)
        await add_event(session, PasswordResetForced(user_id=user.id, username=user.username, actor_id=actor_id,
                                                     reason=note, revoked=revoked), subject=str(user.id))
        await add_event(session, SessionsRevoked(user_id=user.id, reason="admin", actor_id=actor_id,
                                                 revoked=revoked, note=note), subject=str(user.id))
        email = await queue_email(session, rt, user, "reset_password")
    log_email(rt, email)
    log.info("admin %s forced a password reset of user %s (%d session(s) ended)", actor_id, user.id, revoked)
    return revoked
