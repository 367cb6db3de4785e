"""HTTP routes of auth under /api/v1/auth: thin, they turn the caller into ids and call service functions.

Callers are the SDK's principals (`UserPrincipal`, `UserId`, `require_role`): the app's token verifier
trusts auth's own keys from memory (app.py, no HTTP hop). On top, every authenticated route here checks
the token's session (`Caller`): auth refuses tokens of revoked sessions (logout, revoke-all, password
change, role revocation, suspension) at once — other modules see that when the 15-minute token expires
and cannot be refreshed; deleted and suspended accounts they refuse at once (the revocation list).
Auth's routes are account management (verify, change password, 2FA, delete) and must work for an
unverified account, so they take `Caller`, not `WritingUser`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from quark_auth import accounts, admin, mfa, recovery, sessions, signin
from quark_auth.runtime import AuthRuntime
from quark_auth.schemas import (
    AcceptedOut,
    AdminUserOut,
    CodeIn,
    EmailIn,
    LoginIn,
    LogoutIn,
    MfaLoginIn,
    MfaRequiredOut,
    PasswordChangeIn,
    PasswordIn,
    PasswordResetConfirmIn,
    ReasonIn,
    RecoveryCodesOut,
    RefreshIn,
    RegisterIn,
    RevokedOut,
    RoleIn,
    SessionOut,
    SessionPage,
    TokenIn,
    TokensOut,
    TotpSetupOut,
    UserOut,
    UserPage,
)
from quark_sdk.app import DbSession, RuntimeDep
from quark_sdk.auth import Principal, UserId, UserPrincipal, authenticate_token, require_role
from quark_sdk.errors import Unauthenticated
from quark_sdk.pagination import Cursor, Limit
from quark_sdk.routing import GuardedRoute

PREFIX = "/api/v1/auth"
router = APIRouter(prefix=PREFIX, tags=["auth"], route_class=GuardedRoute)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


Runtime = Annotated[AuthRuntime, RuntimeDep]


def session_id_of(principal: Principal) -> uuid.UUID:
    """The session an access token belongs to (its `sid` claim)."""
    try:
        return uuid.UUID(str(principal.claims.get("sid")))
    except ValueError:
        raise Unauthenticated("token has no session") from None


@dataclass(frozen=True)
class Caller:
    """The calling user and the session their token belongs to, checked to be active."""

    user_id: uuid.UUID
    session_id: uuid.UUID


async def caller(principal: UserPrincipal, user_id: UserId, session: DbSession) -> Caller:
    sid = session_id_of(principal)
    await sessions.ensure_session_active(session, user_id, sid)
    return Caller(user_id=user_id, session_id=sid)


async def admin_caller(me: Annotated[Caller, Depends(caller)],
                       _: Annotated[Principal, Depends(require_role("admin"))]) -> Caller:
    return me


Me = Annotated[Caller, Depends(caller)]
Admin = Annotated[Caller, Depends(admin_caller)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization header must be 'Bearer <token>'")
    return token.strip()


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
    user = await accounts.register(session, rt, username=body.username, email=body.email, password=body.password,
                                   display_name=body.display_name, ip=client_ip(request, rt), phone=body.phone,
                                   user_agent=user_agent(request))
    return UserOut.of(user)


@router.post("/login", response_model=TokensOut | MfaRequiredOut,
             summary="Log in with username, email or verified phone; with 2FA enabled, answers mfa_required")
async def login(body: LoginIn, request: Request, response: Response, rt: Runtime,
                session: DbSession) -> TokensOut | MfaRequiredOut:
    response.headers.update(NO_STORE)
    result = await signin.login(session, rt, login=body.login, password=body.password, ip=client_ip(request, rt),
                               user_agent=user_agent(request))
    return MfaRequiredOut.of(result) if isinstance(result, mfa.MfaChallenge) else TokensOut.of(result)


@router.post("/login/mfa", response_model=TokensOut, summary="Second login step: TOTP code or recovery code")
async def login_mfa(body: MfaLoginIn, response: Response, rt: Runtime, session: DbSession) -> TokensOut:
    response.headers.update(NO_STORE)
    return TokensOut.of(await mfa.login_mfa(session, rt, mfa_token=body.mfa_token, code=body.code,
                                            recovery_code=body.recovery_code))


@router.post("/refresh", response_model=TokensOut, summary="Rotate a refresh token for new tokens")
async def refresh(body: RefreshIn, request: Request, response: Response, rt: Runtime,
                  session: DbSession) -> TokensOut:
    response.headers.update(NO_STORE)
    return TokensOut.of(await sessions.refresh(session, rt, refresh_token=body.refresh_token,
                                               ip=client_ip(request, rt), user_agent=user_agent(request)))


@router.post("/logout", status_code=204, summary="End the current session (access token and/or refresh token)")
async def logout(request: Request, rt: Runtime, session: DbSession, body: LogoutIn | None = None) -> None:
    """A bad access token is forgiven when a refresh token names the session (the access token may be expired)."""
    refresh_token = body.refresh_token if body else None
    session_id: uuid.UUID | None = None
    token = bearer_token(request)
    if token is not None:
        try:
            session_id = session_id_of(await authenticate_token(request, token))
        except Unauthenticated:
            if refresh_token is None:
                raise
    elif refresh_token is None:
        raise Unauthenticated("bearer token or refresh_token required")
    await sessions.logout(session, rt, session_id=session_id, refresh_token=refresh_token)


# -- me ---------------------------------------------------------------------------------------------


@router.get("/me", response_model=UserOut, summary="The caller's account")
async def me(me: Me, session: DbSession) -> UserOut:
    return UserOut.of(await accounts.me(session, me.user_id))


@router.delete("/me", status_code=204, summary="Delete the caller's account (password required)")
async def delete_me(body: PasswordIn, me: Me, rt: Runtime, session: DbSession) -> None:
    await accounts.delete_account(session, rt, me.user_id, password=body.password)


@router.post("/password", status_code=204, summary="Change password; other sessions are revoked")
async def change_password(body: PasswordChangeIn, me: Me, rt: Runtime, session: DbSession) -> None:
    await accounts.change_password(session, rt, me.user_id, current_password=body.current_password,
                                   new_password=body.new_password, keep_session=me.session_id)


@router.get("/sessions", response_model=SessionPage, summary="Active sessions (devices) of the caller")
async def list_sessions(me: Me, rt: Runtime, session: DbSession, limit: Limit = 20,
                        cursor: Cursor = None) -> SessionPage:
    rows, next_cursor = await sessions.list_sessions(session, rt, me.user_id, limit=limit, cursor=cursor)
    return SessionPage(items=[SessionOut.of(r, current=me.session_id) for r in rows], next_cursor=next_cursor)


@router.delete("/sessions/{session_id}", status_code=204, summary="Revoke one of the caller's sessions")
async def revoke_session(session_id: uuid.UUID, me: Me, rt: Runtime, session: DbSession) -> None:
    await sessions.revoke_session(session, rt, me.user_id, session_id)


@router.post("/sessions/revoke-all", response_model=RevokedOut, summary="Revoke all of the caller's sessions")
async def revoke_all(me: Me, rt: Runtime, session: DbSession,
                     keep_current: Annotated[bool, Query()] = False) -> RevokedOut:
    keep = me.session_id if keep_current else None
    return RevokedOut(revoked=await sessions.revoke_all_sessions(session, rt, me.user_id, keep=keep))


# -- email verification, password reset ------------------------------------------------------------------


@router.post("/verify-email/request", status_code=202, response_model=AcceptedOut,
             summary="Send (again) the email verification link")
async def verify_email_request(me: Me, rt: Runtime, session: DbSession) -> AcceptedOut:
    await recovery.request_verification(session, rt, me.user_id)
    return AcceptedOut()


@router.post("/verify-email/confirm", status_code=204, summary="Confirm an email address with the emailed token")
async def verify_email_confirm(body: TokenIn, rt: Runtime, session: DbSession) -> None:
    await recovery.confirm_verification(session, rt, token=body.token)


@router.post("/password-reset/request", status_code=202, response_model=AcceptedOut,
             summary="Email a reset link if the address has an account (always 202)")
async def password_reset_request(body: EmailIn, request: Request, rt: Runtime, session: DbSession) -> AcceptedOut:
    await recovery.request_password_reset(session, rt, email=body.email, ip=client_ip(request, rt))
    return AcceptedOut()


@router.post("/password-reset/confirm", status_code=204, summary="Set a new password with the emailed token")
async def password_reset_confirm(body: PasswordResetConfirmIn, rt: Runtime, session: DbSession) -> None:
    await recovery.confirm_password_reset(session, rt, token=body.token, new_password=body.new_password)


# -- 2FA --------------------------------------------------------------------------------------------


@router.post("/2fa/setup", response_model=TotpSetupOut, summary="Start TOTP enrolment")
async def totp_setup(me: Me, rt: Runtime, session: DbSession, response: Response) -> TotpSetupOut:
    response.headers.update(NO_STORE)
    account, secret = await mfa.totp_setup(session, rt, me.user_id)
    return TotpSetupOut(secret=secret, otpauth_uri=mfa.otpauth_uri(rt, account, secret),
                        qr_png_url=f"{PREFIX}/2fa/qr.png")


@router.get("/2fa/qr.png", response_class=Response, summary="QR code (PNG) of the pending enrolment",
            responses={200: {"content": {"image/png": {}}}})
async def totp_qr(me: Me, rt: Runtime, session: DbSession) -> Response:
    png = await mfa.totp_qr_png(session, rt, me.user_id)
    return Response(png, media_type="image/png", headers=NO_STORE)


@router.post("/2fa/confirm", response_model=RecoveryCodesOut, summary="Enable 2FA; returns recovery codes once")
async def totp_confirm(body: CodeIn, me: Me, rt: Runtime, session: DbSession,
                       response: Response) -> RecoveryCodesOut:
    response.headers.update(NO_STORE)
    return RecoveryCodesOut(recovery_codes=await mfa.totp_confirm(session, rt, me.user_id, code=body.code))


@router.post("/2fa/disable", status_code=204, summary="Disable 2FA (password required)")
async def totp_disable(body: PasswordIn, me: Me, rt: Runtime, session: DbSession) -> None:
    await mfa.totp_disable(session, rt, me.user_id, password=body.password)


@router.post("/2fa/recovery-codes", response_model=RecoveryCodesOut,
             summary="New recovery codes (password required); the old ones stop working")
async def recovery_codes(body: PasswordIn, me: Me, rt: Runtime, session: DbSession,
                         response: Response) -> RecoveryCodesOut:
    response.headers.update(NO_STORE)
    return RecoveryCodesOut(recovery_codes=await mfa.regenerate_recovery_codes(session, rt, me.user_id,
                                                                                password=body.password))


# -- admin ------------------------------------------------------------------------------------------


@router.get("/admin/users", response_model=UserPage, summary="All accounts (admin)")
async def admin_users(actor: Admin, session: DbSession, limit: Limit = 50, cursor: Cursor = None,
                      q: Annotated[str | None, Query(max_length=254, pattern=r"^[^\x00]*$",
                                                     description="username/email prefix")] = None,
                      ) -> UserPage:
    users, next_cursor = await admin.list_users(session, limit=limit, cursor=cursor, q=q)
    return UserPage(items=[UserOut.of(u) for u in users], next_cursor=next_cursor)


@router.get("/admin/users/{user_id}", response_model=AdminUserOut,
            summary="One account with its sessions, last login, suspension and forced-reset state (admin)")
async def admin_user(user_id: uuid.UUID, actor: Admin, rt: Runtime, session: DbSession) -> AdminUserOut:
    return await admin.admin_user_detail(session, rt, user_id)


@router.post("/admin/users/{user_id}/roles", response_model=UserOut,
             summary="Grant a role (admin; audited by quark.auth.role_changed)")
async def grant_role(user_id: uuid.UUID, body: RoleIn, actor: Admin, rt: Runtime, session: DbSession) -> UserOut:
    return UserOut.of(await admin.grant_role(session, rt, str(actor.user_id), user_id, body.role, body.reason))


@router.delete("/admin/users/{user_id}/roles/{role}", response_model=UserOut,
               summary="Revoke a role (admin); the user's sessions are revoked too")
async def revoke_role(user_id: uuid.UUID, role: Annotated[str, Path(max_length=32)], actor: Admin, rt: Runtime,
                      session: DbSession, reason: Annotated[str | None, Query(max_length=500)] = None) -> UserOut:
    return UserOut.of(await admin.revoke_role(session, rt, str(actor.user_id), user_id, role, reason))


@router.post("/admin/users/{user_id}/sessions/revoke-all", response_model=RevokedOut,
             summary="Revoke every session of a user (admin; audited by quark.auth.sessions_revoked)")
async def admin_revoke_sessions(user_id: uuid.UUID, actor: Admin, rt: Runtime, session: DbSession,
                                body: ReasonIn | None = None) -> RevokedOut:
    reason = body.reason if body else None
    return RevokedOut(revoked=await admin.admin_revoke_sessions(session, rt, str(actor.user_id), user_id, reason))


@router.post("/admin/users/{user_id}/password-reset", response_model=RevokedOut,
             summary="Force a password reset (admin): the password stops working, sessions end, a reset link "
                     "is mailed; audited by quark.auth.password_reset_forced")
async def force_password_reset(user_id: uuid.UUID, actor: Admin, rt: Runtime, session: DbSession,
                               body: ReasonIn | None = None) -> RevokedOut:
    reason = body.reason if body else None
    return RevokedOut(revoked=await admin.force_password_reset(session, rt, str(actor.user_id), user_id, reason))
