"""Sessions: access tokens, refresh-token families (rotation, reuse detection), the caller's sessions,
revocation, housekeeping."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from quark_auth import rbac
from quark_auth.common import (
    ISSUER,
    SUSPENDED,
    AccountSuspended,
    digest,
    log,
    new_secret,
)
from quark_auth.models import LoginSession, OneTimeToken, RefreshToken, User
from quark_auth.runtime import AuthRuntime
from quark_auth.schemas import (
    UserLoggedIn,
)
from quark_sdk.errors import (
    NotFound,
    Unauthenticated,
)
from quark_sdk.outbox import add_event
from quark_sdk.pagination import decode_cursor, encode_cursor, page_of


@dataclass(frozen=True)
class IssuedTokens:
    """What a successful sign-in or refresh hands out (shaped by `schemas.TokensOut`)."""

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    session_id: uuid.UUID
    user: User


def access_token(rt: AuthRuntime, user: User, session_id: uuid.UUID, *, mfa: bool) -> str:
    now = int(rt.clock())
    roles = user.role_names
    return rt.keys.sign({
        "iss": ISSUER, "aud": rt.settings.token_audience, "sub": str(user.id), "username": user.username,
        "roles": roles, "permissions": rbac.permissions_for(roles), "iat": now, "nbf": now,
        "exp": now + rt.settings.access_token_ttl, "jti": uuid.uuid4().hex, "sid": str(session_id),
        "token_use": "access", "amr": ["pwd", "otp"] if mfa else ["pwd"],
        # The SDK's WritingUser policy reads it; it changes at the next refresh after verification.
        "email_verified": user.email_verified,
        "phone_number_verified": user.phone_verified,  # OIDC's claim name
    })


async def start_session(session: AsyncSession, rt: AuthRuntime, user: User, *, ip: str | None,
                        user_agent: str | None, mfa: bool) -> IssuedTokens:
    """Inside the caller's transaction: a session, its first refresh token and the login event."""
    s = rt.settings
    now = rt.now()
    max_expires = now + timedelta(seconds=s.session_max_age)
    expires = min(now + timedelta(seconds=s.refresh_token_ttl), max_expires)
    login = LoginSession(id=uuid.uuid4(), user_id=user.id, created_at=now, last_used_at=now, expires_at=expires,
                         max_expires_at=max_expires, ip=ip, user_agent=user_agent, mfa=mfa)
    session.add(login)
    refresh = new_secret()
    session.add(RefreshToken(session_id=login.id, token_hash=digest(refresh), created_at=now, expires_at=expires))
    await add_event(session, UserLoggedIn(user_id=user.id, username=user.username, ip=ip, user_agent=user_agent,
                                          at=now, session_id=login.id, mfa=mfa), subject=str(user.id))
    return IssuedTokens(access_token=access_token(rt, user, login.id, mfa=mfa), expires_in=s.access_token_ttl,
                        refresh_token=refresh, refresh_expires_in=int((expires - now).total_seconds()),
                        session_id=login.id, user=user)


# -- refresh, sessions ------------------------------------------------------------------------------


async def refresh(session: AsyncSession, rt: AuthRuntime, *, refresh_token: str, ip: str | None,
                  user_agent: str | None) -> IssuedTokens:
    """Rotate: the presented token is spent and a new one issued. A spent token presented again means it
    was copied: the whole session (token family) is revoked, for the thief and the owner alike."""
    s = rt.settings
    now = rt.now()
    reused: uuid.UUID | None = None
    async with session.begin():
        row = (await session.execute(
            select(RefreshToken, LoginSession).join(LoginSession, LoginSession.id == RefreshToken.session_id)
            .where(RefreshToken.token_hash == digest(refresh_token)).with_for_update()
        )).first()
        if row is None:
            raise Unauthenticated("refresh token invalid", code="invalid-refresh-token")
        token, login_session = row
        owner = await session.get(User, login_session.user_id)
        if owner is not None and owner.suspended:  # its sessions were revoked too; say why
            raise AccountSuspended(SUSPENDED)
        if login_session.revoked_at is not None:
            raise Unauthenticated("session revoked", code="session-revoked")
        if token.used_at is not None:
            login_session.revoked_at, login_session.revoked_reason = now, "refresh_reuse"
            reused = login_session.id
        elif token.expires_at <= now or login_session.max_expires_at <= now:
            raise Unauthenticated("refresh token expired", code="invalid-refresh-token")
        else:
            token.used_at = now
            expires = min(now + timedelta(seconds=s.refresh_token_ttl), login_session.max_expires_at)
            new_token = new_secret()
            session.add(RefreshToken(session_id=login_session.id, token_hash=digest(new_token), created_at=now,
                                     expires_at=expires))
            login_session.last_used_at, login_session.expires_at = now, expires
            login_session.ip, login_session.user_agent = ip or login_session.ip, user_agent or login_session.user_agent
            user = await session.get(User, login_session.user_id)
            if user is None:  # pragma: no cover - the cascade removes sessions with their user
                raise Unauthenticated("account no longer exists")
            tokens = IssuedTokens(
                access_token=access_token(rt, user, login_session.id, mfa=login_session.mfa),
                expires_in=s.access_token_ttl, refresh_token=new_token,
                refresh_expires_in=int((expires - now).total_seconds()), session_id=login_session.id, user=user)
    if reused is not None:
        log.warning("refresh token reuse detected: session %s revoked", reused)
        raise Unauthenticated("refresh token already used; the session has been revoked", code="refresh-token-reused")
    return tokens


async def ensure_session_active(session: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID) -> None:
    """The auth service's own endpoints refuse access tokens of revoked sessions (and suspended accounts)
    at once."""
    async with session.begin():
        row = (await session.execute(
            select(LoginSession.revoked_at, User.suspended_at).join(User, User.id == LoginSession.user_id).where(
                LoginSession.id == session_id, LoginSession.user_id == user_id))).first()
    if row is None:
        raise Unauthenticated("session revoked", code="session-revoked")
    if row.suspended_at is not None:  # its sessions were revoked too; say why
        raise AccountSuspended(SUSPENDED)
    if row.revoked_at is not None:
        raise Unauthenticated("session revoked", code="session-revoked")


async def logout(session: AsyncSession, rt: AuthRuntime, *, session_id: uuid.UUID | None,
                 refresh_token: str | None) -> None:
    """Revoke the caller's session (from the access token) and/or the one the refresh token belongs to."""
    now = rt.now()
    async with session.begin():
        ids: list[uuid.UUID] = []
        if session_id is not None:
            ids.append(session_id)
        if refresh_token is not None:
            sid = await session.scalar(select(RefreshToken.session_id).where(
                RefreshToken.token_hash == digest(refresh_token)))
            if sid is not None:
                ids.append(sid)
        if ids:
            await session.execute(update(LoginSession).where(LoginSession.id.in_(ids),
                                                             LoginSession.revoked_at.is_(None))
                                  .values(revoked_at=now, revoked_reason="logout"))


async def list_sessions(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID, *, limit: int,
                        cursor: str | None) -> tuple[list[LoginSession], str | None]:
    """Active sessions of the user, newest first (keyset pagination)."""
    query = select(LoginSession).where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None),
                                       LoginSession.expires_at > rt.now())
    if cursor:
        created, ident = decode_cursor(cursor, (datetime, uuid.UUID))
        query = query.where(tuple_(LoginSession.created_at, LoginSession.id) < tuple_(created, ident))
    async with session.begin():
        rows = list((await session.scalars(
            query.order_by(LoginSession.created_at.desc(), LoginSession.id.desc()).limit(limit + 1))).all())
    return page_of(rows, limit, lambda r: encode_cursor(r.created_at, r.id))


async def revoke_session(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID, session_id: uuid.UUID) -> None:
    async with session.begin():
        done = await session.execute(
            update(LoginSession).where(LoginSession.id == session_id,
                                       LoginSession.user_id == user_id,
                                       LoginSession.revoked_at.is_(None))
            .values(revoked_at=rt.now(), revoked_reason="revoked"))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound("session not found")


async def revoke_all(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID, *, reason: str,
                     keep: uuid.UUID | None = None) -> int:
    return await revoke_all_at(session, rt.now(), user_id, reason=reason, keep=keep)


async def revoke_all_at(session: AsyncSession, now: datetime, user_id: uuid.UUID, *, reason: str,
                        keep: uuid.UUID | None = None) -> int:
    """Inside the caller's transaction: end every active session of the user (but `keep`)."""
    query = update(LoginSession).where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
    if keep is not None:
        query = query.where(LoginSession.id != keep)
    done = await session.execute(query.values(revoked_at=now, revoked_reason=reason))
    return int(done.rowcount)  # type: ignore[attr-defined]


async def revoke_all_sessions(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID, *,
                              keep: uuid.UUID | None) -> int:
    """End the user's sessions, but `keep` (the caller's own, when asked to)."""
    async with session.begin():
        return await revoke_all(session, rt, user_id, reason="revoked", keep=keep)


# -- housekeeping -----------------------------------------------------------------------------------


async def purge_expired(session: AsyncSession, rt: AuthRuntime, *, keep_days: int = 30) -> dict[str, int]:
    """Drop spent/expired rows: refresh tokens past expiry, old sessions, used or expired one-time tokens."""
    now = rt.now()
    horizon = now - timedelta(days=keep_days)
    counts: dict[str, Any] = {}
    async with session.begin():
        counts["refresh_tokens"] = await session.execute(delete(RefreshToken).where(RefreshToken.expires_at < now))
        counts["sessions"] = await session.execute(delete(LoginSession).where(
            or_(LoginSession.expires_at < horizon, LoginSession.revoked_at < horizon)))
        counts["one_time_tokens"] = await session.execute(delete(OneTimeToken).where(
            or_(OneTimeToken.expires_at < now, OneTimeToken.used_at.is_not(None))))
    return {k: int(v.rowcount) for k, v in counts.items()}
