"""Business logic of auth: plain functions over a session and the runtime, no HTTP types.

Every state change and its event are written in one transaction (`add_event`). Input is validated
before anything is written, so a refused request changes nothing. Secrets handed to clients (refresh,
email and reset tokens, recovery codes, MFA challenges) are stored only as SHA-256 digests, and none of
them, nor any password, is ever logged — except the development-only email log line, which exists so a
developer can click the link.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pyotp
import segno
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_auth import passwords, rbac, reserved
from quark_auth.models import LoginSession, OneTimeToken, RecoveryCode, RefreshToken, User, UserRole
from quark_auth.revocations import restore_account, revoke_account
from quark_auth.runtime import AuthRuntime, retry_after
from quark_auth.schemas import (
    USERNAME_PATTERN,
    EmailRequested,
    MfaRequiredOut,
    PasswordChanged,
    RoleChanged,
    SessionOut,
    SessionsRevoked,
    TokensOut,
    UserDeleted,
    UserLoggedIn,
    UserOut,
    UserRegistered,
    UserSuspendedIn,
    UserVerified,
)
from quark_sdk.auth import Principal
from quark_sdk.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    QuarkError,
    RateLimited,
    Unauthenticated,
)
from quark_sdk.outbox import add_event

log = logging.getLogger("quark.auth")
mail_log = logging.getLogger("quark.auth.mail")

ISSUER = "quark-auth"
EmailKind = Literal["verify_email", "reset_password"]
# The emails sent: the two token kinds, and "someone tried to register with your address" (a reset link).
MailKind = Literal["verify_email", "reset_password", "account_exists"]
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


class InvalidToken(QuarkError):
    """An email-verification or password-reset token that is unknown, used or expired."""

    status, code, title = 400, "invalid-token", "Invalid or expired token"


class AccountSuspended(QuarkError):
    """The account is suspended (by an admin, through the user service): no login, no refresh."""

    status, code, title = 403, "account-suspended", "Account suspended"


INVALID_CREDENTIALS = "invalid username/email or password"
SUSPENDED = "this account is suspended; contact the station's administrators"


# -- small helpers ----------------------------------------------------------------------------------


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """256 bits, URL-safe: refresh tokens, email tokens, MFA challenges."""
    return secrets.token_urlsafe(32)


def normalize_email(raw: str, *, field: str = "email") -> str:
    """Syntax check and normalise (domain lower-cased, IDNA); no DNS lookups (no network on the hot path)."""
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInput(f"email address is not valid: {exc}", field=field) from None


def clean_display_name(raw: str | None) -> str | None:
    if raw is None:
        return None
    name = " ".join(raw.split())
    if not name:
        return None
    if _CONTROL.search(name):
        raise InvalidInput("display name must not contain control characters", field="display_name")
    return name


def user_out(user: User) -> UserOut:
    roles = user.role_names
    return UserOut(id=user.id, username=user.username, email=user.email, display_name=user.display_name,
                   roles=roles, permissions=rbac.permissions_for(roles), email_verified=user.email_verified,
                   mfa_enabled=user.mfa_enabled, created_at=user.created_at, suspended=user.suspended)


def _encode_cursor(created_at: datetime, ident: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{ident}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, ident = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        parsed = datetime.fromisoformat(created)
        if parsed.tzinfo is None:
            raise ValueError("naive")
        return parsed, uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor is not valid", field="cursor") from exc


async def _user_by_login(session: AsyncSession, login: str) -> User | None:
    key = login.strip().lower()
    column = User.email if "@" in key else User.username
    return (await session.scalars(select(User).where(func.lower(column) == key))).first()


async def get_user(session: AsyncSession, user_id: uuid.UUID | str) -> User:
    try:
        ident = user_id if isinstance(user_id, uuid.UUID) else uuid.UUID(str(user_id))
    except ValueError:
        raise NotFound("user not found") from None
    user = await session.get(User, ident)
    if user is None:
        raise NotFound("user not found")
    return user


def _principal_user_id(principal: Principal) -> uuid.UUID:
    try:
        return uuid.UUID(principal.subject)
    except ValueError:
        raise Unauthenticated("token subject invalid") from None


def _principal_session_id(principal: Principal) -> uuid.UUID:
    try:
        return uuid.UUID(str(principal.claims.get("sid")))
    except ValueError:
        raise Unauthenticated("token has no session") from None


def _log_email(rt: AuthRuntime, event: EmailRequested) -> None:
    """Development only: print the email's link so a developer can click through without a mailer."""
    if rt.settings.env == "dev":
        mail_log.info("email %s for %s <%s>: %s", event.kind, event.username, event.email, event.link)


async def _queue_email(session: AsyncSession, rt: AuthRuntime, user: User, mail: MailKind) -> EmailRequested:
    """Create a one-time token (replacing unused ones of the same kind) and the email_requested event.

    `account_exists` tells the owner that someone tried to register with the address, with a reset link."""
    kind: EmailKind = "verify_email" if mail == "verify_email" else "reset_password"
    now = rt.now()
    ttl = rt.settings.verify_email_ttl if kind == "verify_email" else rt.settings.reset_password_ttl
    await session.execute(delete(OneTimeToken).where(OneTimeToken.user_id == user.id, OneTimeToken.kind == kind,
                                                     OneTimeToken.used_at.is_(None)))
    token = new_secret()
    expires = now + timedelta(seconds=ttl)
    session.add(OneTimeToken(user_id=user.id, kind=kind, token_hash=digest(token), email=user.email,
                             created_at=now, expires_at=expires))
    path = "verify-email" if kind == "verify_email" else "reset-password"
    event = EmailRequested(user_id=user.id, email=user.email, kind=mail, token=token, expires_at=expires,
                           username=user.username, link=f"{rt.settings.link_base()}/{path}?token={token}")
    await add_event(session, event, subject=str(user.id))
    return event


# -- accounts ---------------------------------------------------------------------------------------


async def _validate_new_account(session: AsyncSession, *, username: str, email: str, password: str,
                                display_name: str | None) -> tuple[str, str | None, bool]:
    """Checked input: (normalised email, display name, whether the email already has an account).

    A taken username is a 409 (usernames are public); a taken email is only reported to the caller, who
    decides whether to say so (`create_admin`) or not (`register`: account existence is not revealed)."""
    if reserved.is_reserved(username):
        raise InvalidInput(f"username {username!r} is reserved (it names a route or a system account); "
                           "choose another", field="username", code="username-reserved")
    email = normalize_email(email)
    display = clean_display_name(display_name)
    passwords.check_policy(password, username=username, email=email)
    async with session.begin():
        taken = (await session.execute(
            select(func.lower(User.username) == username.lower(), func.lower(User.email) == email.lower())
            .where(or_(func.lower(User.username) == username.lower(), func.lower(User.email) == email.lower()))
        )).first()
    if taken is not None and taken[0]:
        raise Conflict("username is already taken", code="account-exists")
    return email, display, taken is not None


async def _insert_user(session: AsyncSession, rt: AuthRuntime, *, username: str, email: str, password_hash: str,
                       display_name: str | None, roles: list[str], verified: bool,
                       actor: str | None = None) -> tuple[User, EmailRequested | None] | None:
    """Insert the user, roles and events in one transaction; a lost race for the username becomes 409,
    for the email None (the caller decides what to say)."""
    now = rt.now()
    email_event: EmailRequested | None = None
    try:
        async with session.begin():
            user = User(id=uuid.uuid4(), username=username, email=email, display_name=display_name,
                        password_hash=password_hash, email_verified_at=now if verified else None,
                        password_changed_at=now, created_at=now,
                        roles=[UserRole(role=r, granted_at=now, granted_by=actor) for r in roles])
            session.add(user)
            await session.flush()
            await add_event(session, UserRegistered(user_id=user.id, username=user.username, email=user.email,
                                                    display_name=user.display_name, roles=sorted(roles),
                                                    created_at=now), subject=str(user.id))
            for role in roles:
                if actor is not None and role != "user":
                    await add_event(session, RoleChanged(user_id=user.id, username=username, role=role,
                                                         action="granted", actor_id=actor), subject=str(user.id))
            if not verified:
                email_event = await _queue_email(session, rt, user, "verify_email")
    except IntegrityError as exc:
        text = str(exc.orig)
        if "username" in text:
            raise Conflict("username is already taken", code="account-exists") from None
        if "email" in text:
            return None
        raise
    return user, email_event


async def register(session: AsyncSession, rt: AuthRuntime, *, username: str, email: str, password: str,
                   display_name: str | None, ip: str | None) -> User:
    s = rt.settings
    await rt.limit(f"register:ip:{ip or '-'}", limit=s.register_ip_limit, window=s.register_ip_window,
                   detail="too many registrations from this address; try again later")
    email, display, email_taken = await _validate_new_account(session, username=username, email=email,
                                                              password=password, display_name=display_name)
    password_hash = await rt.hasher.hash(password)  # paid on both paths: the same work, the same time
    inserted = None if email_taken else await _insert_user(
        session, rt, username=username, email=email, password_hash=password_hash, display_name=display,
        roles=["user"], verified=False)
    if inserted is None:
        return await _tell_owner(session, rt, username=username, email=email, display_name=display)
    user, email_event = inserted
    if email_event is not None:
        _log_email(rt, email_event)
    return user


async def _tell_owner(session: AsyncSession, rt: AuthRuntime, *, username: str, email: str,
                      display_name: str | None) -> User:
    """The address has an account: answer as if one was created (account existence is never revealed)
    and mail the owner instead — "someone tried to register with your address", with a reset link.

    The account returned is not stored (its id is random); nothing else is written. The owner's mail is
    throttled silently like reset emails."""
    s = rt.settings
    now = rt.now()
    async with session.begin():
        owner = (await session.scalars(select(User).where(func.lower(User.email) == email.lower()))).first()
    if owner is not None and await rt.allowed(f"email:account_exists:{owner.id}", limit=s.email_request_limit,
                                              window=s.email_request_window):
        async with session.begin():
            event = await _queue_email(session, rt, owner, "account_exists")
        _log_email(rt, event)
    return User(id=uuid.uuid4(), username=username, email=email, display_name=display_name, password_hash="",
                email_verified_at=None, created_at=now, password_changed_at=now,
                roles=[UserRole(role="user", granted_at=now)])


async def create_admin(session: AsyncSession, rt: AuthRuntime, *, username: str, email: str, password: str,
                       display_name: str | None = None, force: bool = False) -> User:
    """`quark create-admin`: the first admin of a station (more only with force)."""
    async with session.begin():
        admins = await session.scalar(select(func.count()).select_from(UserRole).where(UserRole.role == "admin"))
    if admins and not force:
        raise Conflict(f"an admin already exists ({admins}); use --force to create another", code="admin-exists")
    if not re.fullmatch(USERNAME_PATTERN, username):
        raise InvalidInput("username must be 3-32 letters, digits, '_', '.', '-'", field="username")
    email, display, email_taken = await _validate_new_account(session, username=username, email=email,
                                                              password=password, display_name=display_name)
    password_hash = await rt.hasher.hash(password)
    inserted = None if email_taken else await _insert_user(
        session, rt, username=username, email=email, password_hash=password_hash, display_name=display,
        roles=["user", "admin"], verified=True, actor="cli")
    if inserted is None:  # the operator at the console may know: it is their station
        raise Conflict("email address is already registered", code="account-exists")
    return inserted[0]


# -- login, lockout ---------------------------------------------------------------------------------


def _account_key(user: User | None, login: str) -> str:
    # Unknown accounts lock exactly like real ones, so lockout does not reveal which accounts exist.
    return str(user.id) if user is not None else "unknown-" + digest(login.strip().lower())[:32]


async def _check_lock(rt: AuthRuntime, account: str) -> None:
    until = await rt.redis.get(rt.key("lock", account))
    if until is not None:
        remaining = float(until) - rt.clock()
        if remaining > 0:
            raise RateLimited("too many failed attempts; account temporarily locked",
                              retry_after=retry_after(remaining), code="account-locked")


async def _record_failure(rt: AuthRuntime, account: str) -> None:
    """Count a failed password/code; the N-th failure in the window locks, each further lockout doubles."""
    s = rt.settings
    # A marker, so a successful login only pays for clearing counters when there is something to clear.
    await rt.redis.set(rt.key("failed", account), "1", ex=86400)
    result = await rt.limiter.hit(f"fail:{account}", limit=s.lockout_threshold, window=s.lockout_window,
                                  now=rt.clock())
    if result.allowed and result.used < s.lockout_threshold:
        return
    level_key = rt.key("lock-level", account)
    level = int(await rt.redis.incr(level_key))
    await rt.redis.expire(level_key, 86400)
    duration = min(s.lockout_base * 2 ** (level - 1), s.lockout_max)
    await rt.redis.set(rt.key("lock", account), repr(rt.clock() + duration), ex=retry_after(duration) + 60)
    log.warning("account %s locked for %.0fs after repeated failures (level %d)", account, duration, level)


async def _clear_failures(rt: AuthRuntime, account: str) -> None:
    """After a success: forget failures (one DEL in the common case of none; the limiter reset SCANs)."""
    if await rt.redis.delete(rt.key("failed", account)):
        await rt.limiter.reset(f"fail:{account}")
        await rt.redis.delete(rt.key("lock-level", account), rt.key("lock", account))


def _access_token(rt: AuthRuntime, user: User, session_id: uuid.UUID, *, mfa: bool) -> str:
    now = int(rt.clock())
    roles = user.role_names
    return rt.keys.sign({
        "iss": ISSUER, "aud": rt.settings.token_audience, "sub": str(user.id), "username": user.username,
        "roles": roles, "permissions": rbac.permissions_for(roles), "iat": now, "nbf": now,
        "exp": now + rt.settings.access_token_ttl, "jti": uuid.uuid4().hex, "sid": str(session_id),
        "token_use": "access", "amr": ["pwd", "otp"] if mfa else ["pwd"],
        # The SDK's WritingUser policy reads it; it changes at the next refresh after verification.
        "email_verified": user.email_verified,
    })


async def _start_session(session: AsyncSession, rt: AuthRuntime, user: User, *, ip: str | None,
                         user_agent: str | None, mfa: bool) -> TokensOut:
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
    return TokensOut(access_token=_access_token(rt, user, login.id, mfa=mfa), expires_in=s.access_token_ttl,
                     refresh_token=refresh, refresh_expires_in=int((expires - now).total_seconds()),
                     session_id=login.id, user=user_out(user))


@dataclass
class _Challenge:
    user_id: str
    ip: str | None
    user_agent: str | None


async def login(session: AsyncSession, rt: AuthRuntime, *, login: str, password: str, ip: str | None,
                user_agent: str | None) -> TokensOut | MfaRequiredOut:
    s = rt.settings
    await rt.limit(f"login:ip:{ip or '-'}", limit=s.login_ip_limit, window=s.login_ip_window,
                   detail="too many login attempts from this address; try again later")
    async with session.begin():
        user = await _user_by_login(session, login)
    account = _account_key(user, login)
    await _check_lock(rt, account)
    # The unknown-user path pays for one bcrypt check too (against a dummy hash): same time, same answer.
    ok = await rt.hasher.verify(password, user.password_hash if user is not None else None)
    if not ok or user is None:
        await _record_failure(rt, account)
        raise Unauthenticated(INVALID_CREDENTIALS, code="invalid-credentials")
    # Failures are forgotten only once the whole login has succeeded: with 2FA, the right password alone
    # must not reset the count, or the second factor could be guessed without ever locking the account.
    if user.suspended:  # only told to whoever knows the password
        raise AccountSuspended(SUSPENDED)
    new_hash = await rt.hasher.hash(password) if rt.hasher.needs_rehash(user.password_hash) else None
    if user.mfa_enabled:
        if new_hash is not None:
            async with session.begin():
                await session.execute(update(User).where(User.id == user.id).values(password_hash=new_hash))
        token = new_secret()
        key = rt.key("mfa", digest(token))
        await rt.redis.set(key, json.dumps({"user_id": str(user.id), "ip": ip, "user_agent": user_agent}),
                           ex=s.mfa_challenge_ttl)
        return MfaRequiredOut(mfa_token=token, expires_in=s.mfa_challenge_ttl)
    async with session.begin():
        # Re-read (roles, suspension): a role revoked or a suspension applied while bcrypt ran counts.
        await session.refresh(user)
        if user.suspended:
            raise AccountSuspended(SUSPENDED)
        if new_hash is not None:
            user.password_hash = new_hash
            session.add(user)
        tokens = await _start_session(session, rt, user, ip=ip, user_agent=user_agent, mfa=False)
    await _clear_failures(rt, account)
    return tokens


def _totp_counter(rt: AuthRuntime, secret: str, code: str, last: int | None) -> int | None:
    """The time step `code` matches (current ±1 step), if it is newer than the last accepted one."""
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    base = totp.timecode(rt.clock())
    for offset in (0, -1, 1):
        counter = base + offset
        if hmac.compare_digest(totp.generate_otp(counter), code) and (last is None or counter > last):
            return counter
    return None


def _normalize_recovery(code: str) -> str:
    return re.sub(r"[\s-]", "", code).upper()


async def login_mfa(session: AsyncSession, rt: AuthRuntime, *, mfa_token: str, code: str | None,
                    recovery_code: str | None) -> TokensOut:
    s = rt.settings
    key = rt.key("mfa", digest(mfa_token))
    raw = await rt.redis.get(key)
    if raw is None:
        raise Unauthenticated("MFA token invalid or expired; log in again", code="mfa-token-invalid")
    challenge = _Challenge(**json.loads(raw))
    account = challenge.user_id
    await _check_lock(rt, account)
    async with session.begin():
        user = await session.get(User, uuid.UUID(challenge.user_id))
    if user is None or user.totp_secret is None:
        await rt.redis.delete(key)
        raise Unauthenticated("MFA token invalid or expired; log in again", code="mfa-token-invalid")

    counter: int | None = None
    recovery_hash: str | None = None
    valid = False
    if code is not None:
        counter = _totp_counter(rt, user.totp_secret, code, user.totp_last_counter)
        valid = counter is not None
    elif recovery_code is not None:
        recovery_hash = digest(_normalize_recovery(recovery_code))
        async with session.begin():
            valid = (await session.scalar(select(RecoveryCode.id).where(
                RecoveryCode.user_id == user.id, RecoveryCode.code_hash == recovery_hash,
                RecoveryCode.used_at.is_(None)))) is not None
    if not valid:
        attempts = int(await rt.redis.incr(key + ":attempts"))
        await rt.redis.expire(key + ":attempts", s.mfa_challenge_ttl)
        if attempts >= s.mfa_max_attempts:
            await rt.redis.delete(key)
        await _record_failure(rt, account)
        raise Unauthenticated("the code is not correct", code="invalid-code")
    if not await rt.redis.delete(key):  # a concurrent request consumed this challenge first
        raise Unauthenticated("MFA token invalid or expired; log in again", code="mfa-token-invalid")
    async with session.begin():
        await session.refresh(user)
        if user.suspended:
            raise AccountSuspended(SUSPENDED)
        if counter is not None:
            # Conditional update: the same code can never complete two logins (replay protection).
            done = await session.execute(
                update(User).where(User.id == user.id, or_(User.totp_last_counter.is_(None),
                                                            User.totp_last_counter < counter))
                .values(totp_last_counter=counter))
        else:
            done = await session.execute(
                update(RecoveryCode).where(RecoveryCode.user_id == user.id, RecoveryCode.code_hash == recovery_hash,
                                           RecoveryCode.used_at.is_(None)).values(used_at=rt.now()))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise Unauthenticated("the code was already used", code="invalid-code")
        tokens = await _start_session(session, rt, user, ip=challenge.ip, user_agent=challenge.user_agent, mfa=True)
    await _clear_failures(rt, account)
    return tokens


# -- refresh, sessions ------------------------------------------------------------------------------


async def refresh(session: AsyncSession, rt: AuthRuntime, *, refresh_token: str, ip: str | None,
                  user_agent: str | None) -> TokensOut:
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
            tokens = TokensOut(
                access_token=_access_token(rt, user, login_session.id, mfa=login_session.mfa),
                expires_in=s.access_token_ttl, refresh_token=new_token,
                refresh_expires_in=int((expires - now).total_seconds()), session_id=login_session.id,
                user=user_out(user))
    if reused is not None:
        log.warning("refresh token reuse detected: session %s revoked", reused)
        raise Unauthenticated("refresh token already used; the session has been revoked", code="refresh-token-reused")
    return tokens


async def ensure_session_active(session: AsyncSession, principal: Principal) -> None:
    """The auth service's own endpoints refuse access tokens of revoked sessions (and suspended accounts)
    at once."""
    sid = _principal_session_id(principal)
    async with session.begin():
        row = (await session.execute(
            select(LoginSession.revoked_at, User.suspended_at).join(User, User.id == LoginSession.user_id).where(
                LoginSession.id == sid, LoginSession.user_id == _principal_user_id(principal)))).first()
    if row is None:
        raise Unauthenticated("session revoked", code="session-revoked")
    if row.suspended_at is not None:  # its sessions were revoked too; say why
        raise AccountSuspended(SUSPENDED)
    if row.revoked_at is not None:
        raise Unauthenticated("session revoked", code="session-revoked")


async def logout(session: AsyncSession, rt: AuthRuntime, *, principal: Principal | None,
                 refresh_token: str | None) -> None:
    """Revoke the caller's session (from the access token) and/or the one the refresh token belongs to."""
    now = rt.now()
    async with session.begin():
        ids: list[uuid.UUID] = []
        if principal is not None:
            ids.append(_principal_session_id(principal))
        if refresh_token is not None:
            sid = await session.scalar(select(RefreshToken.session_id).where(
                RefreshToken.token_hash == digest(refresh_token)))
            if sid is not None:
                ids.append(sid)
        if ids:
            await session.execute(update(LoginSession).where(LoginSession.id.in_(ids),
                                                             LoginSession.revoked_at.is_(None))
                                  .values(revoked_at=now, revoked_reason="logout"))


async def list_sessions(session: AsyncSession, rt: AuthRuntime, principal: Principal, *, limit: int,
                        cursor: str | None) -> tuple[list[SessionOut], str | None]:
    """Active sessions of the caller, newest first (keyset pagination)."""
    user_id, current = _principal_user_id(principal), _principal_session_id(principal)
    query = select(LoginSession).where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None),
                                       LoginSession.expires_at > rt.now())
    if cursor:
        created, ident = _decode_cursor(cursor)
        query = query.where(tuple_(LoginSession.created_at, LoginSession.id) < tuple_(created, ident))
    async with session.begin():
        rows = list((await session.scalars(
            query.order_by(LoginSession.created_at.desc(), LoginSession.id.desc()).limit(limit + 1))).all())
    next_cursor = _encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    items = [SessionOut(id=r.id, created_at=r.created_at, last_used_at=r.last_used_at, expires_at=r.expires_at,
                        ip=r.ip, user_agent=r.user_agent, mfa=r.mfa, current=r.id == current) for r in rows[:limit]]
    return items, next_cursor


async def revoke_session(session: AsyncSession, rt: AuthRuntime, principal: Principal, session_id: uuid.UUID) -> None:
    async with session.begin():
        done = await session.execute(
            update(LoginSession).where(LoginSession.id == session_id,
                                       LoginSession.user_id == _principal_user_id(principal),
                                       LoginSession.revoked_at.is_(None))
            .values(revoked_at=rt.now(), revoked_reason="revoked"))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound("session not found")


async def _revoke_all(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID, *, reason: str,
                      keep: uuid.UUID | None = None) -> int:
    return await _revoke_all_at(session, rt.now(), user_id, reason=reason, keep=keep)


async def _revoke_all_at(session: AsyncSession, now: datetime, user_id: uuid.UUID, *, reason: str,
                         keep: uuid.UUID | None = None) -> int:
    """Inside the caller's transaction: end every active session of the user (but `keep`)."""
    query = update(LoginSession).where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
    if keep is not None:
        query = query.where(LoginSession.id != keep)
    done = await session.execute(query.values(revoked_at=now, revoked_reason=reason))
    return int(done.rowcount)  # type: ignore[attr-defined]


async def revoke_all_sessions(session: AsyncSession, rt: AuthRuntime, principal: Principal, *,
                              keep_current: bool) -> int:
    keep = _principal_session_id(principal) if keep_current else None
    async with session.begin():
        return await _revoke_all(session, rt, _principal_user_id(principal), reason="revoked", keep=keep)


# -- profile, password ------------------------------------------------------------------------------


async def me(session: AsyncSession, principal: Principal) -> User:
    async with session.begin():
        return await get_user(session, _principal_user_id(principal))


async def _check_password(session: AsyncSession, rt: AuthRuntime, user: User, password: str) -> None:
    """Re-authentication for sensitive actions; rate limited per user, wrong password is 403."""
    s = rt.settings
    await rt.limit(f"sensitive:{user.id}", limit=s.sensitive_action_limit, window=s.sensitive_action_window,
                   detail="too many attempts; try again later")
    if not await rt.hasher.verify(password, user.password_hash):
        raise PermissionDenied("password is not correct", code="wrong-password")


async def change_password(session: AsyncSession, rt: AuthRuntime, principal: Principal, *, current_password: str,
                          new_password: str) -> None:
    async with session.begin():
        user = await get_user(session, _principal_user_id(principal))
    passwords.check_policy(new_password, username=user.username, email=user.email, field="new_password")
    if new_password == current_password:
        raise InvalidInput("new password must differ from the current one", field="new_password")
    await _check_password(session, rt, user, current_password)
    new_hash = await rt.hasher.hash(new_password)
    async with session.begin():
        await session.execute(update(User).where(User.id == user.id)
                              .values(password_hash=new_hash, password_changed_at=rt.now()))
        # Someone who knew the old password loses every other session; the caller keeps theirs.
        await _revoke_all(session, rt, user.id, reason="password_changed", keep=_principal_session_id(principal))
        await add_event(session, PasswordChanged(user_id=user.id, reason="changed"), subject=str(user.id))


async def delete_account(session: AsyncSession, rt: AuthRuntime, principal: Principal, *, password: str) -> None:
    async with session.begin():
        user = await get_user(session, _principal_user_id(principal))
    await _check_password(session, rt, user, password)
    async with session.begin():
        if "admin" in user.role_names:
            admins = (await session.scalars(select(UserRole.user_id).where(UserRole.role == "admin")
                                            .with_for_update())).all()
            if len(admins) <= 1:
                raise Conflict("the last admin cannot delete their account; make another admin first",
                               code="last-admin")
        await session.execute(delete(User).where(User.id == user.id))
        await add_event(session, UserDeleted(user_id=user.id, username=user.username), subject=str(user.id))
        # Last, before the commit: the account's live access tokens stop writing everywhere at once
        # (and if Valkey cannot be reached, nothing is deleted).
        await revoke_account(rt, user.id)


# -- email verification, password reset ------------------------------------------------------------------


async def request_verification(session: AsyncSession, rt: AuthRuntime, principal: Principal) -> None:
    s = rt.settings
    async with session.begin():
        user = await get_user(session, _principal_user_id(principal))
    if user.email_verified:
        raise Conflict("email address is already verified", code="already-verified")
    await rt.limit(f"email:verify_email:{user.id}", limit=s.email_request_limit, window=s.email_request_window,
                   detail="too many verification emails requested; try again later")
    async with session.begin():
        event = await _queue_email(session, rt, user, "verify_email")
    _log_email(rt, event)


async def _take_token(session: AsyncSession, rt: AuthRuntime, token: str, kind: EmailKind) -> tuple[OneTimeToken, User]:
    """Inside the caller's transaction: the unused, unexpired token of `kind` and its user (row-locked)."""
    row = (await session.execute(
        select(OneTimeToken, User).join(User, User.id == OneTimeToken.user_id)
        .where(OneTimeToken.token_hash == digest(token), OneTimeToken.kind == kind).with_for_update()
    )).first()
    if row is None:
        raise InvalidToken("token is invalid or expired")
    record, user = row
    if record.used_at is not None or record.expires_at <= rt.now() or record.email.lower() != user.email.lower():
        raise InvalidToken("token is invalid or expired")
    return record, user


async def confirm_verification(session: AsyncSession, rt: AuthRuntime, *, token: str) -> User:
    async with session.begin():
        record, user = await _take_token(session, rt, token, "verify_email")
        record.used_at = rt.now()
        if user.email_verified_at is None:
            user.email_verified_at = rt.now()
            await add_event(session, UserVerified(user_id=user.id, username=user.username), subject=str(user.id))
    return user


async def request_password_reset(session: AsyncSession, rt: AuthRuntime, *, email: str, ip: str | None) -> None:
    """Always "accepted", in the same time: whether the address has an account is never revealed (nor its
    rate limit). Both paths do the same lookups and counting, and the answer is padded to a fixed floor
    (`reset_request_floor`), which covers the one step only a real account takes (storing its token)."""
    s = rt.settings
    await rt.limit(f"email:ip:{ip or '-'}", limit=s.email_request_ip_limit, window=s.email_request_window,
                   detail="too many requests from this address; try again later")
    address = normalize_email(email)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await _send_reset(session, rt, address)
    finally:
        await asyncio.sleep(max(0.0, s.reset_request_floor - (loop.time() - started)))


async def _send_reset(session: AsyncSession, rt: AuthRuntime, address: str) -> None:
    s = rt.settings
    async with session.begin():
        user = (await session.scalars(select(User).where(func.lower(User.email) == address.lower()))).first()
    # An unknown address is counted too (under its digest): the same Redis work as a real account.
    subject = str(user.id) if user is not None else "unknown-" + digest(address.lower())[:32]
    allowed = await rt.allowed(f"email:reset_password:{subject}", limit=s.email_request_limit,
                               window=s.email_request_window)
    if user is None:
        return
    if not allowed:
        log.info("password reset for user %s throttled", user.id)
        return
    async with session.begin():
        event = await _queue_email(session, rt, user, "reset_password")
    _log_email(rt, event)


async def confirm_password_reset(session: AsyncSession, rt: AuthRuntime, *, token: str, new_password: str) -> None:
    async with session.begin():
        _, user = await _take_token(session, rt, token, "reset_password")
    passwords.check_policy(new_password, username=user.username, email=user.email, field="new_password")
    new_hash = await rt.hasher.hash(new_password)
    async with session.begin():
        record, user = await _take_token(session, rt, token, "reset_password")  # again, locked: single use
        now = rt.now()
        record.used_at = now
        user.password_hash, user.password_changed_at = new_hash, now
        if user.email_verified_at is None:  # the reset link proved the address
            user.email_verified_at = now
            await add_event(session, UserVerified(user_id=user.id, username=user.username), subject=str(user.id))
        await _revoke_all(session, rt, user.id, reason="password_reset")
        await add_event(session, PasswordChanged(user_id=user.id, reason="reset"), subject=str(user.id))
    await _clear_failures(rt, str(user.id))


# -- 2FA --------------------------------------------------------------------------------------------


def otpauth_uri(rt: AuthRuntime, user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=rt.settings.totp_issuer)


async def totp_setup(session: AsyncSession, rt: AuthRuntime, principal: Principal) -> tuple[User, str]:
    """Start enrolment: a fresh secret, kept pending until a code from it is confirmed."""
    async with session.begin():
        user = await get_user(session, _principal_user_id(principal))
        if user.totp_secret is not None:
            raise Conflict("two-factor authentication is already enabled", code="mfa-enabled")
        secret = pyotp.random_base32()
        user.totp_pending_secret = secret
    return user, secret


async def totp_qr_png(session: AsyncSession, rt: AuthRuntime, principal: Principal) -> bytes:
    async with session.begin():
        user = await get_user(session, _principal_user_id(principal))
    if user.totp_pending_secret is None:
        raise NotFound("no two-factor enrolment in progress; call /2fa/setup first")
    out = io.BytesIO()
    segno.make(otpauth_uri(rt, user, user.totp_pending_secret), error="m").save(out, kind="png", scale=6, border=4)
    return out.getvalue()


def _recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode()  # 80 bits, 16 characters
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


async def totp_confirm(session: AsyncSession, rt: AuthRuntime, principal: Principal, *, code: str) -> list[str]:
    s = rt.settings
    async with session.begin():
        user = await get_user(session, _principal_user_id(principal))
    if user.totp_secret is not None:
        raise Conflict("two-factor authentication is already enabled", code="mfa-enabled")
    if user.totp_pending_secret is None:
        raise Conflict("no two-factor enrolment in progress; call /2fa/setup first", code="mfa-not-started")
    await rt.limit(f"sensitive:{user.id}", limit=s.sensitive_action_limit, window=s.sensitive_action_window,
                   detail="too many attempts; try again later")
    counter = _totp_counter(rt, user.totp_pending_secret, code, None)
    if counter is None:
        raise InvalidInput("the code is not correct", field="code", code="invalid-code")
    codes = [_recovery_code() for _ in range(s.recovery_code_count)]
    async with session.begin():
        done = await session.execute(
            update(User).where(User.id == user.id, User.totp_secret.is_(None),
                               User.totp_pending_secret == user.totp_pending_secret)
            .values(totp_secret=user.totp_pending_secret, totp_pending_secret=None, totp_last_counter=counter,
                    totp_enabled_at=rt.now()))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict("enrolment changed meanwhile; start again", code="mfa-not-started")
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        session.add_all([RecoveryCode(user_id=user.id, code_hash=digest(_normalize_recovery(c))) for c in codes])
    return codes


async def totp_disable(session: AsyncSession, rt: AuthRuntime, principal: Principal, *, password: str) -> None:
    async with session.begin():
        user = await get_user(session, _principal_user_id(principal))
    if user.totp_secret is None:
        raise Conflict("two-factor authentication is not enabled", code="mfa-disabled")
    await _check_password(session, rt, user, password)
    async with session.begin():
        await session.execute(update(User).where(User.id == user.id).values(
            totp_secret=None, totp_pending_secret=None, totp_last_counter=None, totp_enabled_at=None))
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


# -- admin ------------------------------------------------------------------------------------------


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
        created, ident = _decode_cursor(cursor)
        query = query.where(tuple_(User.created_at, User.id) > tuple_(created, ident))
    async with session.begin():
        rows = list((await session.scalars(query.order_by(User.created_at, User.id).limit(limit + 1))).all())
    next_cursor = _encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def admin_get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    async with session.begin():
        return await get_user(session, user_id)


def _check_role(role: str) -> None:
    if role not in rbac.ROLES:
        raise InvalidInput(f"unknown role {role[:32]!r}; roles are {', '.join(rbac.ROLES)}", field="role")


async def grant_role(session: AsyncSession, rt: AuthRuntime, actor: Principal, user_id: uuid.UUID, role: str) -> User:
    """Idempotent: granting a held role changes nothing and emits nothing."""
    _check_role(role)
    async with session.begin():
        user = await get_user(session, user_id)
        if role not in user.role_names:
            user.roles.append(UserRole(role=role, granted_at=rt.now(), granted_by=actor.subject))
            await session.flush()
            await add_event(session, RoleChanged(user_id=user.id, username=user.username, role=role, action="granted",
                                                 actor_id=actor.subject), subject=str(user.id))
    return user


async def revoke_role(session: AsyncSession, rt: AuthRuntime, actor: Principal, user_id: uuid.UUID,
                      role: str) -> User:
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
                                                 actor_id=actor.subject), subject=str(user.id))
            # A demoted user must not keep the role: their sessions end (auth's endpoints refuse the access
            # token at once; elsewhere it works until it expires, and it can no longer be refreshed).
            revoked = await _revoke_all(session, rt, user.id, reason="role_revoked")
            await add_event(session, SessionsRevoked(user_id=user.id, reason="role_revoked", actor_id=actor.subject,
                                                     revoked=revoked), subject=str(user.id))
    return user


async def admin_revoke_sessions(session: AsyncSession, rt: AuthRuntime, actor: Principal,
                                user_id: uuid.UUID) -> int:
    """An admin ends every session of a user (stolen device, compromised account); audited by an event."""
    async with session.begin():
        user = await get_user(session, user_id)
        revoked = await _revoke_all(session, rt, user.id, reason="admin")
        await add_event(session, SessionsRevoked(user_id=user.id, reason="admin", actor_id=actor.subject,
                                                 revoked=revoked), subject=str(user.id))
    log.info("admin %s revoked %d session(s) of user %s", actor.subject, revoked, user.id)
    return revoked


# -- suspension (decided by the user service) ---------------------------------------------------------


async def apply_user_suspended(session: AsyncSession, rt: AuthRuntime, data: UserSuspendedIn, *,
                               at: datetime) -> None:
    """Consumer, inside its transaction: mark the account (un)suspended; on suspension end its sessions
    and revoke its access tokens in every module (the revocation list), on unsuspension lift that.

    `at` is the event's time: an older event delivered late (redelivery after a newer one) changes
    nothing. An unknown user (deleted meanwhile) is ignored."""
    user = await session.get(User, data.user_id, with_for_update=True)
    if user is None:
        log.info("suspension event for unknown user %s ignored", data.user_id)
        return
    if user.suspension_changed_at is not None and at < user.suspension_changed_at:
        log.info("stale suspension event for user %s ignored", data.user_id)
        return
    user.suspension_changed_at = at
    if not data.suspended:
        user.suspended_at = None
        await restore_account(rt, user.id)
        return
    if user.suspended_at is None:
        user.suspended_at = at
    await revoke_account(rt, user.id)
    revoked = await _revoke_all_at(session, datetime.now(UTC), user.id, reason="suspended")
    await add_event(session, SessionsRevoked(user_id=user.id, reason="suspended",
                                             actor_id=(data.actor_id or "user-service")[:64], revoked=revoked),
                    subject=str(user.id))


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
