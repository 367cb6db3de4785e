"""HTTP routes of auth under /api/v1/auth: thin, they call service functions.

The auth service verifies its own access tokens with the SDK's TokenVerifier fed from its key set in
memory (no HTTP hop), and additionally refuses tokens whose session was revoked (logout, revoke-all,
password change, role revocation, suspension) — other services only see that once the 15-minute token
expires (it can no longer be refreshed).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from quark_auth import service
from quark_auth.runtime import AuthRuntime
from quark_auth.schemas import (
    AcceptedOut,
    CodeIn,
    EmailIn,
    LoginIn,
    LogoutIn,
    MfaLoginIn,
    MfaRequiredOut,
    PasswordChangeIn,
    PasswordIn,
    PasswordResetConfirmIn,
    RecoveryCodesOut,
    RefreshIn,
    RegisterIn,
    RevokedOut,
    RoleIn,
    SessionPage,
    TokenIn,
    TokensOut,
    TotpSetupOut,
    UserOut,
    UserPage,
)
from quark_sdk.app import DbSession, RuntimeDep
from quark_sdk.auth import Principal
from quark_sdk.errors import PermissionDenied, Unauthenticated
from quark_sdk.routing import GuardedRoute

PREFIX = "/api/v1/auth"
router = APIRouter(prefix=PREFIX, tags=["auth"], route_class=GuardedRoute)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


Runtime = Annotated[AuthRuntime, RuntimeDep]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization header must be 'Bearer <token>'")
    return token.strip()


async def authenticated(request: Request, rt: Runtime, session: DbSession) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated("bearer token required")
    principal = await rt.verifier.verify(token)
    if not principal.is_user:
        raise PermissionDenied("a user token is required")
    await service.ensure_session_active(session, principal)
    request.state.principal = principal
    return principal


async def admin(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    if not principal.has_role("admin"):
        raise PermissionDenied("requires role admin")
    return principal


User = Annotated[Principal, Depends(authenticated)]
Admin = Annotated[Principal, Depends(admin)]


def client_ip(request: Request, rt: AuthRuntime) -> str | None:
    """The caller's address; behind the gateway (trust_proxy_headers) the hop it appended to X-Forwarded-For."""
    if rt.settings.trust_proxy_headers:
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1][:64]
    return request.client.host[:64] if request.client else None


def user_agent(request: Request) -> str | None:
    agent = request.headers.get("user-agent")
    return agent[:256] if agent else None


# -- keys -------------------------------------------------------------------------------------------


@router.get("/.well-known/jwks.json", summary="Public signing keys (JWKS)")
async def jwks(rt: Runtime, response: Response) -> dict[str, object]:
    response.headers["Cache-Control"] = f"public, max-age={rt.settings.jwks_max_age}"
    return rt.keys.jwks()


# -- accounts and login -----------------------------------------------------------------------------


@router.post("/register", status_code=201, response_model=UserOut, summary="Create an account")
async def register(body: RegisterIn, request: Request, rt: Runtime, session: DbSession) -> UserOut:
    user = await service.register(session, rt, username=body.username, email=body.email, password=body.password,
                                  display_name=body.display_name, ip=client_ip(request, rt))
    return service.user_out(user)


@router.post("/login", response_model=TokensOut | MfaRequiredOut,
             summary="Log in with username or email; with 2FA enabled, answers mfa_required")
async def login(body: LoginIn, request: Request, response: Response, rt: Runtime,
                session: DbSession) -> TokensOut | MfaRequiredOut:
    response.headers.update(NO_STORE)
    return await service.login(session, rt, login=body.login, password=body.password, ip=client_ip(request, rt),
                               user_agent=user_agent(request))


@router.post("/login/mfa", response_model=TokensOut, summary="Second login step: TOTP code or recovery code")
async def login_mfa(body: MfaLoginIn, response: Response, rt: Runtime, session: DbSession) -> TokensOut:
    response.headers.update(NO_STORE)
    return await service.login_mfa(session, rt, mfa_token=body.mfa_token, code=body.code,
                                   recovery_code=body.recovery_code)


@router.post("/refresh", response_model=TokensOut, summary="Rotate a refresh token for new tokens")
async def refresh(body: RefreshIn, request: Request, response: Response, rt: Runtime,
                  session: DbSession) -> TokensOut:
    response.headers.update(NO_STORE)
    return await service.refresh(session, rt, refresh_token=body.refresh_token, ip=client_ip(request, rt),
                                 user_agent=user_agent(request))


@router.post("/logout", status_code=204, summary="End the current session (access token and/or refresh token)")
async def logout(request: Request, rt: Runtime, session: DbSession, body: LogoutIn | None = None) -> None:
    refresh_token = body.refresh_token if body else None
    principal: Principal | None = None
    token = bearer_token(request)
    if token is not None:
        try:
            principal = await rt.verifier.verify(token)
        except Unauthenticated:
            if refresh_token is None:
                raise
    elif refresh_token is None:
        raise Unauthenticated("bearer token or refresh_token required")
    await service.logout(session, rt, principal=principal, refresh_token=refresh_token)


# -- me ---------------------------------------------------------------------------------------------


@router.get("/me", response_model=UserOut, summary="The caller's account")
async def me(user: User, session: DbSession) -> UserOut:
    return service.user_out(await service.me(session, user))


@router.delete("/me", status_code=204, summary="Delete the caller's account (password required)")
async def delete_me(body: PasswordIn, user: User, rt: Runtime, session: DbSession) -> None:
    await service.delete_account(session, rt, user, password=body.password)


@router.post("/password", status_code=204, summary="Change password; other sessions are revoked")
async def change_password(body: PasswordChangeIn, user: User, rt: Runtime, session: DbSession) -> None:
    await service.change_password(session, rt, user, current_password=body.current_password,
                                  new_password=body.new_password)


@router.get("/sessions", response_model=SessionPage, summary="Active sessions (devices) of the caller")
async def sessions(user: User, rt: Runtime, session: DbSession,
                   limit: Annotated[int, Query(ge=1, le=100)] = 20,
                   cursor: Annotated[str | None, Query(max_length=200)] = None) -> SessionPage:
    items, next_cursor = await service.list_sessions(session, rt, user, limit=limit, cursor=cursor)
    return SessionPage(items=items, next_cursor=next_cursor)


@router.delete("/sessions/{session_id}", status_code=204, summary="Revoke one of the caller's sessions")
async def revoke_session(session_id: uuid.UUID, user: User, rt: Runtime, session: DbSession) -> None:
    await service.revoke_session(session, rt, user, session_id)


@router.post("/sessions/revoke-all", response_model=RevokedOut, summary="Revoke all of the caller's sessions")
async def revoke_all(user: User, rt: Runtime, session: DbSession,
                     keep_current: Annotated[bool, Query()] = False) -> RevokedOut:
    return RevokedOut(revoked=await service.revoke_all_sessions(session, rt, user, keep_current=keep_current))


# -- email verification, password reset ------------------------------------------------------------------


@router.post("/verify-email/request", status_code=202, response_model=AcceptedOut,
             summary="Send (again) the email verification link")
async def verify_email_request(user: User, rt: Runtime, session: DbSession) -> AcceptedOut:
    await service.request_verification(session, rt, user)
    return AcceptedOut()


@router.post("/verify-email/confirm", status_code=204, summary="Confirm an email address with the emailed token")
async def verify_email_confirm(body: TokenIn, rt: Runtime, session: DbSession) -> None:
    await service.confirm_verification(session, rt, token=body.token)


@router.post("/password-reset/request", status_code=202, response_model=AcceptedOut,
             summary="Email a reset link if the address has an account (always 202)")
async def password_reset_request(body: EmailIn, request: Request, rt: Runtime, session: DbSession) -> AcceptedOut:
    await service.request_password_reset(session, rt, email=body.email, ip=client_ip(request, rt))
    return AcceptedOut()


@router.post("/password-reset/confirm", status_code=204, summary="Set a new password with the emailed token")
async def password_reset_confirm(body: PasswordResetConfirmIn, rt: Runtime, session: DbSession) -> None:
    await service.confirm_password_reset(session, rt, token=body.token, new_password=body.new_password)


# -- 2FA --------------------------------------------------------------------------------------------


@router.post("/2fa/setup", response_model=TotpSetupOut, summary="Start TOTP enrolment")
async def totp_setup(user: User, rt: Runtime, session: DbSession, response: Response) -> TotpSetupOut:
    response.headers.update(NO_STORE)
    account, secret = await service.totp_setup(session, rt, user)
    return TotpSetupOut(secret=secret, otpauth_uri=service.otpauth_uri(rt, account, secret),
                        qr_png_url=f"{PREFIX}/2fa/qr.png")


@router.get("/2fa/qr.png", response_class=Response, summary="QR code (PNG) of the pending enrolment",
            responses={200: {"content": {"image/png": {}}}})
async def totp_qr(user: User, rt: Runtime, session: DbSession) -> Response:
    png = await service.totp_qr_png(session, rt, user)
    return Response(png, media_type="image/png", headers=NO_STORE)


@router.post("/2fa/confirm", response_model=RecoveryCodesOut, summary="Enable 2FA; returns recovery codes once")
async def totp_confirm(body: CodeIn, user: User, rt: Runtime, session: DbSession,
                       response: Response) -> RecoveryCodesOut:
    response.headers.update(NO_STORE)
    return RecoveryCodesOut(recovery_codes=await service.totp_confirm(session, rt, user, code=body.code))


@router.post("/2fa/disable", status_code=204, summary="Disable 2FA (password required)")
async def totp_disable(body: PasswordIn, user: User, rt: Runtime, session: DbSession) -> None:
    await service.totp_disable(session, rt, user, password=body.password)


# -- admin ------------------------------------------------------------------------------------------


@router.get("/admin/users", response_model=UserPage, summary="All accounts (admin)")
async def admin_users(actor: Admin, rt: Runtime, session: DbSession,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                      cursor: Annotated[str | None, Query(max_length=200)] = None,
                      q: Annotated[str | None, Query(max_length=254, pattern=r"^[^\x00]*$",
                                                     description="username/email prefix")] = None,
                      ) -> UserPage:
    users, next_cursor = await service.list_users(session, limit=min(limit, rt.settings.max_page_size),
                                                  cursor=cursor, q=q)
    return UserPage(items=[service.user_out(u) for u in users], next_cursor=next_cursor)


@router.get("/admin/users/{user_id}", response_model=UserOut, summary="One account (admin)")
async def admin_user(user_id: uuid.UUID, actor: Admin, session: DbSession) -> UserOut:
    return service.user_out(await service.admin_get_user(session, user_id))


@router.post("/admin/users/{user_id}/roles", response_model=UserOut, summary="Grant a role (admin)")
async def grant_role(user_id: uuid.UUID, body: RoleIn, actor: Admin, rt: Runtime, session: DbSession) -> UserOut:
    return service.user_out(await service.grant_role(session, rt, actor, user_id, body.role))


@router.delete("/admin/users/{user_id}/roles/{role}", response_model=UserOut,
               summary="Revoke a role (admin); the user's sessions are revoked too")
async def revoke_role(user_id: uuid.UUID, role: Annotated[str, Path(max_length=32)], actor: Admin, rt: Runtime,
                      session: DbSession) -> UserOut:
    return service.user_out(await service.revoke_role(session, rt, actor, user_id, role))


@router.post("/admin/users/{user_id}/sessions/revoke-all", response_model=RevokedOut,
             summary="Revoke every session of a user (admin; audited by quark.auth.sessions_revoked)")
async def admin_revoke_sessions(user_id: uuid.UUID, actor: Admin, rt: Runtime, session: DbSession) -> RevokedOut:
    return RevokedOut(revoked=await service.admin_revoke_sessions(session, rt, actor, user_id))
