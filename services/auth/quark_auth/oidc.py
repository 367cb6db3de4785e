"""Sign-in with a provider (OIDC / OAuth2): the flows over `providers.py`.

1. `authorize`: a one-time `state` (kept in Valkey with the `nonce`, the PKCE verifier, the redirect URI and
   the intent — sign in, or link to the signed-in caller) and the provider's authorization URL.
2. `callback`: the state is taken (GETDEL: single use, it cannot be replayed), the code exchanged, the person
   identified (ID token verified / user API). A known (provider, subject) signs in through
   `signin.finish_login` (the account's 2FA still applies). An unknown one gets a short-lived signup token:
   the person chooses a username (`signup`). Accounts are **never** matched by email: an address at a
   provider proves nothing about an account here (account takeover through an unverified provider email).
3. `signup`: the account is created with the identity linked; the provider's email is taken as verified
   only when the provider says `email_verified` (otherwise a verification mail is sent), and not at all
   when another account already has it.
Link / unlink for the signed-in person; unlinking the last way to sign in is refused.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from quark_auth import reserved
from quark_auth.accounts import insert_user
from quark_auth.common import clean_display_name, digest, get_user, log, log_email, new_secret
from quark_auth.mfa import MfaChallenge
from quark_auth.models import ExternalIdentity, User
from quark_auth.phones import other_sign_in_methods
from quark_auth.providers import ProviderIdentity, authorization_request, exchange_code, identify, provider
from quark_auth.runtime import AuthRuntime
from quark_auth.schemas import IdentityLinked, IdentityUnlinked
from quark_auth.sessions import IssuedTokens
from quark_auth.signin import finish_login
from quark_sdk.errors import Conflict, InvalidInput, NotFound, QuarkError, Unauthenticated
from quark_sdk.outbox import add_event


class InvalidState(QuarkError):
    """Unknown, used or expired `state` (or signup token): start the sign-in again."""

    status, code, title = 400, "invalid-state", "Invalid or expired sign-in state"


@dataclass
class _State:
    provider: str
    nonce: str | None
    code_verifier: str
    redirect_uri: str
    intent: str  # login | link
    user_id: str | None
    ip: str | None
    user_agent: str | None


@dataclass(frozen=True)
class Authorization:
    url: str
    state: str
    expires_in: int


@dataclass(frozen=True)
class SignupRequired:
    signup_token: str
    expires_in: int
    identity: ProviderIdentity
    suggested_username: str | None


@dataclass(frozen=True)
class Linked:
    identity: ExternalIdentity


def check_redirect_uri(rt: AuthRuntime, redirect_uri: str) -> None:
    """Only the station's own pages (under `app_url`) and the configured URLs: the code must never be sent
    to a stranger's site."""
    base = rt.settings.link_base() + "/"
    if redirect_uri in rt.settings.oidc_redirect_uris:
        return
    if redirect_uri.startswith(base) and "#" not in redirect_uri and ".." not in redirect_uri:
        return
    raise InvalidInput("redirect_uri is not one of this station's sign-in pages", field="redirect_uri",
                       code="redirect-uri-not-allowed")


async def authorize(rt: AuthRuntime, name: str, *, redirect_uri: str, intent: str, user_id: uuid.UUID | None,
                    ip: str | None, user_agent: str | None) -> Authorization:
    s = rt.settings
    p = provider(rt, name)
    check_redirect_uri(rt, redirect_uri)
    if intent == "link" and user_id is None:
        raise Unauthenticated("linking a provider needs a signed-in caller (Bearer token)")
    await rt.limit(f"login:ip:{ip or '-'}", limit=s.login_ip_limit, window=s.login_ip_window,
                   detail="too many login attempts from this address; try again later")
    request = await authorization_request(rt, p, redirect_uri=redirect_uri)
    state = _State(provider=p.name, nonce=request.nonce, code_verifier=request.code_verifier,
                   redirect_uri=redirect_uri, intent=intent, user_id=str(user_id) if user_id else None, ip=ip,
                   user_agent=user_agent)
    await rt.redis.set(rt.key("oidc-state", digest(request.state)), json.dumps(asdict(state)), ex=s.oidc_state_ttl)
    return Authorization(url=request.url, state=request.state, expires_in=s.oidc_state_ttl)


async def _take_state(rt: AuthRuntime, state: str) -> _State:
    raw = await rt.redis.getdel(rt.key("oidc-state", digest(state)))
    if raw is None:
        raise InvalidState("the sign-in state is unknown, used or expired; start again")
    return _State(**json.loads(raw))


def _suggest_username(identity: ProviderIdentity) -> str | None:
    for source in (identity.username, (identity.email or "").partition("@")[0], identity.name):
        if not source:
            continue
        name = re.sub(r"[^A-Za-z0-9_.-]", "", source.replace(" ", "_"))[:32].strip(".-")
        if len(name) >= 3 and not reserved.is_reserved(name):
            return name
    return None


async def callback(session: AsyncSession, rt: AuthRuntime, name: str, *, state: str, code: str,
                   caller: uuid.UUID | None) -> IssuedTokens | MfaChallenge | SignupRequired | Linked:
    pending = await _take_state(rt, state)
    if pending.provider != name:
        raise InvalidState("the sign-in state belongs to another provider; start again")
    p = provider(rt, name)
    tokens = await exchange_code(rt, p, code=code, redirect_uri=pending.redirect_uri,
                                 code_verifier=pending.code_verifier)
    identity = await identify(rt, p, tokens, nonce=pending.nonce)
    if pending.intent == "link":
        if pending.user_id is None or (caller is not None and str(caller) != pending.user_id):
            raise InvalidState("this link request belongs to another account; start again")
        return Linked(identity=await link(session, rt, uuid.UUID(pending.user_id), identity))
    async with session.begin():
        row = (await session.execute(
            select(ExternalIdentity, User).join(User, User.id == ExternalIdentity.user_id)
            .where(ExternalIdentity.provider == identity.provider, ExternalIdentity.subject == identity.subject)
        )).first()
        if row is not None:
            row[0].last_used_at = rt.now()
    if row is None:
        return await _signup_token(rt, identity)
    user = row[1]
    return await finish_login(session, rt, user, account=str(user.id), ip=pending.ip, user_agent=pending.user_agent)


async def _signup_token(rt: AuthRuntime, identity: ProviderIdentity) -> SignupRequired:
    s = rt.settings
    token = new_secret()
    await rt.redis.set(rt.key("oidc-signup", digest(token)), json.dumps(asdict(identity)), ex=s.oidc_signup_ttl)
    return SignupRequired(signup_token=token, expires_in=s.oidc_signup_ttl, identity=identity,
                          suggested_username=_suggest_username(identity))


async def signup(session: AsyncSession, rt: AuthRuntime, *, signup_token: str, username: str,
                 display_name: str | None, ip: str | None, user_agent: str | None) -> IssuedTokens | MfaChallenge:
    """Create the account for a provider identity met for the first time, with the username the person chose."""
    s = rt.settings
    await rt.limit(f"register:ip:{ip or '-'}", limit=s.register_ip_limit, window=s.register_ip_window,
                   detail="too many registrations from this address; try again later")
    key = rt.key("oidc-signup", digest(signup_token))
    raw = await rt.redis.get(key)
    if raw is None:
        raise InvalidState("the signup is unknown, used or expired; sign in with the provider again")
    identity = ProviderIdentity(**json.loads(raw))
    if reserved.is_reserved(username):
        raise InvalidInput(f"username {username!r} is reserved (it names a route or a system account); "
                           "choose another", field="username", code="username-reserved")
    display = clean_display_name(display_name or identity.name)
    email = identity.email
    async with session.begin():
        if await session.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
            raise Conflict("username is already taken", code="account-exists")
        if email is not None and await session.scalar(
                select(User.id).where(func.lower(User.email) == email.lower())) is not None:
            email = None  # another account's address: never linked by email, never said
    now = rt.now()

    async def link_identity(session: AsyncSession, user: User) -> None:
        session.add(ExternalIdentity(user_id=user.id, provider=identity.provider, subject=identity.subject,
                                     email=identity.email, email_verified=identity.email_verified,
                                     created_at=now, last_used_at=now))
        await add_event(session, IdentityLinked(user_id=user.id, provider=identity.provider,
                                                subject=identity.subject), subject=str(user.id))

    try:
        inserted = await insert_user(session, rt, username=username, email=email, password_hash=None,
                                     display_name=display, roles=["user"], verified=identity.email_verified,
                                     extra=link_identity)
    except IntegrityError:  # the same provider account signed up twice at once
        raise InvalidState("this provider account is already linked; sign in again") from None
    if inserted is None:
        raise Conflict("the email address was taken meanwhile; try again", code="account-exists")
    user, email_event = inserted
    await rt.redis.delete(key)
    if email_event is not None:
        log_email(rt, email_event)
    log.info("user %s signed up with provider %s", user.id, identity.provider)
    return await finish_login(session, rt, user, account=str(user.id), ip=ip, user_agent=user_agent)


async def link(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID,
               identity: ProviderIdentity) -> ExternalIdentity:
    """Add a provider identity to the caller; one linked to another account is a 409 (nothing moves)."""
    now = rt.now()
    async with session.begin():
        await get_user(session, user_id)
        existing = (await session.scalars(select(ExternalIdentity).where(
            ExternalIdentity.provider == identity.provider, ExternalIdentity.subject == identity.subject))).first()
        if existing is not None:
            if existing.user_id != user_id:
                raise Conflict("this provider account is linked to another account", code="identity-linked")
            existing.last_used_at = now
            return existing
        row = ExternalIdentity(user_id=user_id, provider=identity.provider, subject=identity.subject,
                               email=identity.email, email_verified=identity.email_verified, created_at=now,
                               last_used_at=now)
        session.add(row)
        try:
            await session.flush()
        except IntegrityError:
            raise Conflict("this provider account is linked to another account", code="identity-linked") from None
        await add_event(session, IdentityLinked(user_id=user_id, provider=identity.provider,
                                                subject=identity.subject), subject=str(user_id))
    return row


async def identities(session: AsyncSession, user_id: uuid.UUID) -> list[ExternalIdentity]:
    async with session.begin():
        return list((await session.scalars(select(ExternalIdentity).where(ExternalIdentity.user_id == user_id)
                                           .order_by(ExternalIdentity.provider, ExternalIdentity.created_at))).all())


async def unlink(session: AsyncSession, rt: AuthRuntime, user_id: uuid.UUID, name: str) -> None:
    async with session.begin():
        user = await get_user(session, user_id)
        rows = (await session.scalars(select(ExternalIdentity).where(
            ExternalIdentity.user_id == user_id, ExternalIdentity.provider == name).with_for_update())).all()
        if not rows:
            raise NotFound(f"no {name} account is linked")
        for row in rows:
            if not await other_sign_in_methods(session, user, without=f"identity:{row.id}"):
                raise Conflict("this provider is your only way to sign in; set a password or verify a phone "
                               "first", code="last-sign-in-method")
            await session.execute(delete(ExternalIdentity).where(ExternalIdentity.id == row.id))
            await add_event(session, IdentityUnlinked(user_id=user_id, provider=row.provider, subject=row.subject),
                            subject=str(user_id))
