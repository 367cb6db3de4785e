"""Accounts: registration (account existence never revealed), `quark create-admin`, the caller's own
account (password change, deletion) and the password re-check of sensitive actions."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_auth import passwords, reserved
from quark_auth.common import (
    clean_display_name,
    get_user,
    log_email,
    normalize_email,
    queue_email,
)
from quark_auth.models import User, UserRole
from quark_auth.phone import normalize_phone, queue_code, reserve_send
from quark_auth.revocations import revoke_account
from quark_auth.runtime import AuthRuntime
from quark_auth.schemas import (
    USERNAME_PATTERN,
    EmailRequested,
    PasswordChanged,
    RoleChanged,
    UserDeleted,
    UserRegistered,
)
from quark_auth.sessions import revoke_all
from quark_sdk.errors import (
    Conflict,
    InvalidInput,
    PermissionDenied,
)
from quark_sdk.outbox import add_event


async def _validate_new_account(session: AsyncSession, rt: AuthRuntime, *, username: str, email: str | None,
                                password: str | None, display_name: str | None,
                                phone: str | None = None) -> NewAccount:
    """Checked input: normalised email and phone, display name, and whether either already has an account.

    A taken username is a 409 (usernames are public); a taken email or phone is only reported to the caller,
    who decides whether to say so (`create_admin`) or not (`register`: account existence is not revealed).
    A phone counts as taken only when an account has verified it."""
    if reserved.is_reserved(username):
        raise InvalidInput(f"username {username!r} is reserved (it names a route or a system account); "
                           "choose another", field="username", code="username-reserved")
    address = normalize_email(email) if email is not None else None
    number = normalize_phone(phone, rt) if phone is not None else None
    display = clean_display_name(display_name)
    if password is not None:
        passwords.check_policy(password, username=username, email=address)
    async with session.begin():
        if await session.scalar(select(User.id).where(func.lower(User.username) == username.lower())) is not None:
            raise Conflict("username is already taken", code="account-exists")
        email_taken = address is not None and await session.scalar(
            select(User.id).where(func.lower(User.email) == address.lower())) is not None
        phone_taken = number is not None and await session.scalar(
            select(User.id).where(User.phone == number, User.phone_verified_at.is_not(None))) is not None
    return NewAccount(email=address, phone=number, display_name=display, email_taken=email_taken,
                      phone_taken=phone_taken)


@dataclass(frozen=True)
class NewAccount:
    email: str | None
    phone: str | None
    display_name: str | None
    email_taken: bool
    phone_taken: bool


async def insert_user(session: AsyncSession, rt: AuthRuntime, *, username: str, email: str | None,
                      password_hash: str | None, display_name: str | None, roles: list[str], verified: bool,
                      actor: str | None = None, phone: str | None = None, ip: str | None = None,
                      user_agent: str | None = None,
                      extra: Callable[[AsyncSession, User], Awaitable[None]] | None = None,
                      ) -> tuple[User, EmailRequested | None] | None:
    """Insert the user, roles and events in one transaction (and `extra`: a linked provider identity); a
    lost race for the username becomes 409, for the email None (the caller decides what to say).

    An unverified email gets its verification mail; a phone (never verified yet) its signup code."""
    now = rt.now()
    email_event: EmailRequested | None = None
    try:
        async with session.begin():
            user = User(id=uuid.uuid4(), username=username, email=email, display_name=display_name,
                        password_hash=password_hash, email_verified_at=now if verified and email else None,
                        password_changed_at=now, created_at=now, phone=phone,
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
            if email is not None and not verified:
                email_event = await queue_email(session, rt, user, "verify_email")
            if phone is not None:
                await queue_code(session, rt, purpose="signup", subject=phone, phone=phone, user_id=user.id,
                                 username=username, ip=ip, user_agent=user_agent)
            if extra is not None:
                await extra(session, user)
    except IntegrityError as exc:
        text = str(exc.orig)
        if "username" in text:
            raise Conflict("username is already taken", code="account-exists") from None
        if "email" in text:
            return None
        raise
    return user, email_event


async def register(session: AsyncSession, rt: AuthRuntime, *, username: str, email: str | None, password: str,
                   display_name: str | None, ip: str | None, phone: str | None = None,
                   user_agent: str | None = None) -> User:
    """With an email (a verification mail) and/or a phone (a signup code by SMS, confirmed at
    `/register/phone/confirm`). An email or a phone that already has an account gets the same answer."""
    s = rt.settings
    await rt.limit(f"register:ip:{ip or '-'}", limit=s.register_ip_limit, window=s.register_ip_window,
                   detail="too many registrations from this address; try again later")
    new = await _validate_new_account(session, rt, username=username, email=email, password=password,
                                      display_name=display_name, phone=phone)
    if await rt.redis.exists(_held_username_key(rt, username)):
        raise Conflict("username is already taken", code="account-exists")
    if new.phone is not None:  # counted on both paths: the limits say nothing about the number
        await reserve_send(rt, phone=new.phone, ip=ip, account=None)
    password_hash = await rt.hasher.hash(password)  # paid on both paths: the same work, the same time
    taken = new.email_taken or new.phone_taken
    inserted = None if taken else await insert_user(
        session, rt, username=username, email=new.email, password_hash=password_hash,
        display_name=new.display_name, roles=["user"], verified=False, phone=new.phone, ip=ip,
        user_agent=user_agent)
    if inserted is None:
        return await _tell_owner(session, rt, username=username, email=new.email, phone=new.phone,
                                 display_name=new.display_name)
    user, email_event = inserted
    if email_event is not None:
        log_email(rt, email_event)
    return user


def _held_username_key(rt: AuthRuntime, username: str) -> str:
    return rt.key("username-held", username.lower())


async def _tell_owner(session: AsyncSession, rt: AuthRuntime, *, username: str, email: str | None,
                      phone: str | None, display_name: str | None) -> User:
    """The address has an account: answer as if one was created (account existence is never revealed)
    and mail the owner instead — "someone tried to register with your address", with a reset link.

    The account returned is not stored (its id is random); nothing else is written. The owner's mail is
    throttled silently like reset emails. A taken phone gets no SMS (each one costs the station money)."""
    s = rt.settings
    now = rt.now()
    # The username now looks taken to the next registration, as it would had an account been created.
    await rt.redis.set(_held_username_key(rt, username), "1", ex=s.username_hold_seconds, nx=True)
    owner = None
    if email is not None:
        async with session.begin():
            owner = (await session.scalars(select(User).where(func.lower(User.email) == email.lower()))).first()
    if owner is not None and await rt.allowed(f"email:account_exists:{owner.id}", limit=s.email_request_limit,
                                              window=s.email_request_window):
        async with session.begin():
            event = await queue_email(session, rt, owner, "account_exists")
        log_email(rt, event)
    return User(id=uuid.uuid4(), username=username, email=email, display_name=display_name, password_hash="",
                email_verified_at=None, created_at=now, password_changed_at=now, phone=phone,
                phone_verified_at=None, phone_mfa=False, suspended_at=None, totp_secret=None,
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
    new = await _validate_new_account(session, rt, username=username, email=email, password=password,
                                      display_name=display_name)
    password_hash = await rt.hasher.hash(password)
    inserted = None if new.email_taken else await insert_user(
        session, rt, username=username, email=new.email, password_hash=password_hash,
        display_name=new.display_name,
        roles=["user", "admin"], verified=True, actor="cli")
    if inserted is None:  # the operator at the console may know: it is their station
        raise Conflict("email address is already registered", code="account-exists")
    return inserted[0]


# -- profile, password ------------------------------------------------------------------------------


async def me(session: AsyncSession, user_id: uuid.UUID) -> User:
    async with session.begin():
        return await get_user(session, user_id)


async def check_password(session: AsyncSession, rt: AuthRuntime, user: User, password: str) -> None:
    """Re-authentication for sensitive actions; rate limited per user, wrong password is 403."""
    s = rt.settings
    await rt.limit(f"sensitive:{user.id}", limit=s.sensitive_action_limit, window=s.sensitive_action_window,
                   detail="too many attempts; try again later")
    if user.password_hash is None:
        raise Conflict("this account has no password; set one with a password reset first", code="no-password")
    if not await rt.hasher.verify(password, user.password_hash):
        raise PermissionDenied("password is not correct", code="wrong-password")


async def change_password(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID, *, current_password: str,
                          new_password: str, keep_session: uuid.UUID) -> None:
    """The caller keeps their session (`keep_session`); every other one ends."""
    async with session.begin():
        user = await get_user(session, user_id)
    passwords.check_policy(new_password, username=user.username, email=user.email, field="new_password")
    if new_password == current_password:
        raise InvalidInput("new password must differ from the current one", field="new_password")
    await check_password(session, rt, user, current_password)
    new_hash = await rt.hasher.hash(new_password)
    async with session.begin():
        await session.execute(update(User).where(User.id == user.id)
                              .values(password_hash=new_hash, password_changed_at=rt.now()))
        # Someone who knew the old password loses every other session; the caller keeps theirs.
        await revoke_all(session, rt, user.id, reason="password_changed", keep=keep_session)
        await add_event(session, PasswordChanged(user_id=user.id, reason="changed"), subject=str(user.id))


async def delete_account(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID, *, password: str) -> None:
    async with session.begin():
        user = await get_user(session, user_id)
    await check_password(session, rt, user, password)
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
