"""HTTP routes of the identities beyond email, under /api/v1/auth: phone numbers (SMS codes) and sign-in
providers (OIDC / OAuth2). Thin, like `api.py`, whose caller helpers they share."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from quark_auth import oidc, phones, providers
from quark_auth.api import NO_STORE, PREFIX, Me, Runtime, bearer_token, client_ip, session_id_of, user_agent
from quark_auth.mfa import MfaChallenge
from quark_auth.models import ExternalIdentity
from quark_auth.schemas import (
    AcceptedOut,
    AuthorizeOut,
    CodeIn,
    IdentitiesOut,
    IdentityOut,
    LinkedOut,
    MfaRequiredOut,
    OidcAuthorizeIn,
    OidcCallbackIn,
    OidcSignupIn,
    PasswordMaybeIn,
    PhoneAttachIn,
    PhoneCodeIn,
    PhoneIn,
    ProviderOut,
    ProvidersOut,
    SignupRequiredOut,
    SmsMfaIn,
    TokensOut,
    UserOut,
)
from quark_auth.sessions import IssuedTokens, ensure_session_active
from quark_sdk.app import DbSession
from quark_sdk.auth import authenticate_token
from quark_sdk.errors import Unauthenticated
from quark_sdk.routing import GuardedRoute

router = APIRouter(prefix=PREFIX, tags=["auth: phone and providers"], route_class=GuardedRoute)
ProviderName = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9_-]*$")]


def _signed_in(result: IssuedTokens | MfaChallenge) -> TokensOut | MfaRequiredOut:
    return MfaRequiredOut.of(result) if isinstance(result, MfaChallenge) else TokensOut.of(result)


def _identity(row: ExternalIdentity) -> IdentityOut:
    return IdentityOut(provider=row.provider, subject=row.subject, email=row.email,
                       email_verified=row.email_verified, created_at=row.created_at, last_used_at=row.last_used_at)


async def _optional_caller(request: Request, session: DbSession) -> uuid.UUID | None:
    """The signed-in caller when a Bearer token is sent (linking a provider), else None."""
    token = bearer_token(request)
    if token is None:
        return None
    principal = await authenticate_token(request, token)
    if principal.kind != "user":
        raise Unauthenticated("a user's token is needed")
    user_id = uuid.UUID(principal.subject)
    await ensure_session_active(session, user_id, session_id_of(principal))
    return user_id


# -- phone ------------------------------------------------------------------------------------------


@router.post("/register/phone/confirm", response_model=TokensOut | MfaRequiredOut,
             summary="Confirm a registration by phone with the SMS code; signs in")
async def register_phone_confirm(body: PhoneCodeIn, request: Request, response: Response, rt: Runtime,
                                 session: DbSession) -> TokensOut | MfaRequiredOut:
    response.headers.update(NO_STORE)
    return _signed_in(await phones.confirm_signup(session, rt, phone=body.phone, code=body.code,
                                                  ip=client_ip(request, rt), user_agent=user_agent(request)))


@router.post("/login/phone/code", status_code=202, response_model=AcceptedOut,
             summary="Send a sign-in code by SMS (always 202: whether the number has an account is not said)")
async def login_phone_code(body: PhoneIn, request: Request, rt: Runtime, session: DbSession) -> AcceptedOut:
    await phones.request_login_code(session, rt, phone=body.phone, ip=client_ip(request, rt),
                                    user_agent=user_agent(request))
    return AcceptedOut()


@router.post("/login/phone", response_model=TokensOut | MfaRequiredOut,
             summary="Sign in with phone + SMS code (passwordless); with 2FA enabled, answers mfa_required")
async def login_phone(body: PhoneCodeIn, request: Request, response: Response, rt: Runtime,
                      session: DbSession) -> TokensOut | MfaRequiredOut:
    response.headers.update(NO_STORE)
    return _signed_in(await phones.login_with_code(session, rt, phone=body.phone, code=body.code,
                                                   ip=client_ip(request, rt), user_agent=user_agent(request)))


@router.post("/phone", status_code=202, response_model=AcceptedOut,
             summary="Add or change the caller's phone: sends a code to the new number")
async def phone_attach(body: PhoneAttachIn, me: Me, request: Request, rt: Runtime, session: DbSession) -> AcceptedOut:
    await phones.attach(session, rt, me.user_id, phone=body.phone, password=body.password, ip=client_ip(request, rt))
    return AcceptedOut()


@router.post("/phone/confirm", response_model=UserOut, summary="Confirm the new phone with the SMS code")
async def phone_confirm(body: CodeIn, me: Me, rt: Runtime, session: DbSession) -> UserOut:
    return UserOut.of(await phones.confirm_attach(session, rt, me.user_id, code=body.code))


@router.delete("/phone", response_model=UserOut,
               summary="Remove the caller's phone (never the last way to sign in)")
async def phone_remove(me: Me, rt: Runtime, session: DbSession, body: PasswordMaybeIn | None = None) -> UserOut:
    return UserOut.of(await phones.remove(session, rt, me.user_id, password=body.password if body else None))


@router.post("/2fa/sms", response_model=UserOut,
             summary="SMS codes as the second factor (only without TOTP; weaker than an authenticator app)")
async def sms_mfa(body: SmsMfaIn, me: Me, rt: Runtime, session: DbSession) -> UserOut:
    return UserOut.of(await phones.set_sms_mfa(session, rt, me.user_id, enabled=body.enabled,
                                               password=body.password))


# -- providers ----------------------------------------------------------------------------------------


@router.get("/oidc/providers", response_model=ProvidersOut, summary="The station's sign-in providers")
async def list_providers(rt: Runtime) -> ProvidersOut:
    return ProvidersOut(items=[ProviderOut(name=p.name, display_name=p.display_name,
                                           kind="oidc" if p.oidc else "oauth2")
                               for p in providers.all_providers(rt)])


@router.post("/oidc/{provider}/authorize", response_model=AuthorizeOut,
             summary="Start signing in (or linking, with a Bearer token) with a provider: its authorization URL")
async def oidc_authorize(provider: ProviderName, body: OidcAuthorizeIn, request: Request, response: Response,
                         rt: Runtime, session: DbSession) -> AuthorizeOut:
    response.headers.update(NO_STORE)
    caller = await _optional_caller(request, session) if body.intent == "link" else None
    result = await oidc.authorize(rt, provider, redirect_uri=body.redirect_uri, intent=body.intent, user_id=caller,
                                  ip=client_ip(request, rt), user_agent=user_agent(request))
    return AuthorizeOut(authorization_url=result.url, state=result.state, expires_in=result.expires_in)


@router.post("/oidc/{provider}/callback", response_model=TokensOut | MfaRequiredOut | SignupRequiredOut | LinkedOut,
             summary="Finish with the provider's code and state: tokens, mfa_required, signup_required or linked")
async def oidc_callback(provider: ProviderName, body: OidcCallbackIn, request: Request, response: Response,
                        rt: Runtime, session: DbSession,
                        ) -> TokensOut | MfaRequiredOut | SignupRequiredOut | LinkedOut:
    response.headers.update(NO_STORE)
    caller = await _optional_caller(request, session)
    result = await oidc.callback(session, rt, provider, state=body.state, code=body.code, caller=caller)
    if isinstance(result, oidc.SignupRequired):
        ident = result.identity
        return SignupRequiredOut(signup_token=result.signup_token, expires_in=result.expires_in,
                                 provider=ident.provider, suggested_username=result.suggested_username,
                                 display_name=ident.name, email=ident.email, email_verified=ident.email_verified)
    if isinstance(result, oidc.Linked):
        return LinkedOut(identity=_identity(result.identity))
    return _signed_in(result)


@router.post("/oidc/signup", response_model=TokensOut | MfaRequiredOut,
             summary="First sign-in with a provider: create the account with the chosen username")
async def oidc_signup(body: OidcSignupIn, request: Request, response: Response, rt: Runtime,
                      session: DbSession) -> TokensOut | MfaRequiredOut:
    response.headers.update(NO_STORE)
    return _signed_in(await oidc.signup(session, rt, signup_token=body.signup_token, username=body.username,
                                        display_name=body.display_name, ip=client_ip(request, rt),
                                        user_agent=user_agent(request)))


@router.get("/oidc/identities", response_model=IdentitiesOut, summary="The caller's linked provider accounts")
async def list_identities(me: Me, session: DbSession) -> IdentitiesOut:
    return IdentitiesOut(items=[_identity(r) for r in await oidc.identities(session, me.user_id)])


@router.delete("/oidc/identities/{provider}", status_code=204,
               summary="Unlink a provider (never the last way to sign in)")
async def unlink_identity(provider: ProviderName, me: Me, rt: Runtime, session: DbSession) -> None:
    await oidc.unlink(session, rt, me.user_id, provider)
