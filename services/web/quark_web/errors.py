"""Module answers (problem+json) turned into sentences a person understands, in the page's language.

Messages here are catalogue keys (English); `Page.error_page` translates them.
"""

from __future__ import annotations

from quark_web.apiclient import ApiError

CSRF_FAILED = "This form has expired or did not come from this site. Reload the page and try again."
FORM_INVALID = "Some fields are missing or invalid. Check the form and try again."
NOT_FOUND = "We could not find that page."
SIGN_IN_NEEDED = "Please sign in to continue."

# Problem codes (the `code` field or the last segment of `type`) the modules use.
BY_CODE: dict[str, str] = {
    "invalid-credentials": "Wrong username, email or password.",
    "account-locked": "Too many failed attempts. Wait a few minutes and try again.",
    "rate-limited": "Too many attempts. Wait a moment and try again.",
    "account-exists": "An account with this username or email already exists.",
    "username-reserved": "This username is reserved. Choose another one.",
    "invalid-token": "This link is invalid or has expired. Ask for a new one.",
    "invalid-code": "The code is wrong or has expired. Try again.",
    "mfa-token-invalid": "The sign-in step took too long. Sign in again.",
    "already-verified": "Your email address is already confirmed.",
    "wrong-password": "The password is not correct.",
    "session-revoked": "This session was signed out. Sign in again.",
    "account-suspended": "This account is suspended.",
    "already-reacted": "You already reacted this way.",
    "already-reported": "You already reported this.",
    "duplicate-slug": "You already have a post with this address (slug). Choose another one.",
    "prompt-too-long": "The topic is too long.",
    "provider-unavailable": "The AI assistant is not available right now. Try again later.",
    "blog-unavailable": "Posts are not available right now. Try again in a moment.",
    "mfa-enabled": "Two-factor authentication is already on.",
    "mfa-not-started": "Start the two-factor setup again.",
    "mfa-disabled": "Two-factor authentication is already off.",
}
BY_STATUS: dict[int, str] = {
    400: "The request could not be understood. Try again.",
    401: SIGN_IN_NEEDED,
    403: "You are not allowed to do this.",
    404: "We could not find what you were looking for.",
    409: "This conflicts with something that already exists.",
    410: "This is no longer available.",
    413: "This is too large.",
    415: "This kind of file is not supported.",
    422: FORM_INVALID,
    429: "Too many attempts. Wait a moment and try again.",
}
GENERIC = "Something went wrong on our side. Try again in a moment."

MODULE_NAMES = {"auth": "Sign-in", "user": "Profiles", "blog": "Posts", "media": "Images",
                "messaging": "Messages", "ai": "AI assistant", "gateway": "The station"}

# One-time notices shown after a redirect (the flash cookie carries the key, never free text).
FLASHES: dict[str, str] = {
    "registered": "Account created. We sent you an email: follow its link to confirm your address.",
    "verified": "Your email address is confirmed.",
    "signed-out": "You are signed out.",
    "reset-sent": "If an account uses this address, we sent it a link to reset the password.",
    "password-reset": "Your password is changed. Sign in with the new one.",
    "session-revoked": "The session is signed out.",
    "reported": "Thank you. Moderators will look at your report.",
    "post-saved": "Saved.",
    "post-deleted": "The post is deleted.",
    "draft-rejected": "The draft is rejected.",
    "draft-approved": "The draft is now a post draft in your blog. Review it and publish when ready.",
    "verify-sent": "We sent you a new confirmation link.",
    # social and messenger
    "profile-saved": "Your profile is saved.",
    "avatar-pending": "The image is uploaded; your new avatar shows as soon as it is processed.",
    "avatar-removed": "The avatar is removed.",
    "request-accepted": "The follow request is accepted.",
    "request-declined": "The follow request is declined.",
    "notifications-read": "All notifications are marked as read.",
    # two-factor settings, group chats (web3)
    "mfa-disabled": "Two-factor authentication is off.",
    "chat-renamed": "The conversation is renamed.",
    "members-added": "The members are added.",
    "member-removed": "The member is removed.",
    "chat-left": "You left the conversation.",
    # console: user administration, the operator's view, AI oversight
    "console-role-granted": "The role is granted.",
    "console-role-revoked": "The role is revoked; the person's sessions ended.",
    "console-sessions-revoked": "Every session of this account is signed out.",
    "console-reset-forced": "The password no longer works; a reset link is on its way to the account's address.",
    "console-suspended": "The account is suspended.",
    "console-unsuspended": "The account is reinstated.",
    "console-replayed": "The event is replayed to its original subject.",
    "console-discarded": "The dead letter is discarded.",
    "console-thresholds-saved": "The moderation thresholds are saved.",
    "console-lifecycle": "The hub accepted the change; the module's instances follow within seconds.",
}


def human(exc: ApiError) -> str:
    """The message key for a module's error answer."""
    if exc.code in BY_CODE:
        return BY_CODE[exc.code]
    if exc.status == 429 or exc.code == "too-many-requests":
        return BY_STATUS[429]
    return BY_STATUS.get(exc.status, GENERIC)


def module_down(module: str) -> str:
    return "This part of the station is not available right now. Try again in a moment."


def field_errors(exc: ApiError) -> dict[str, str]:
    """Field -> the module's own message, for forms that show errors beside the inputs."""
    out: dict[str, str] = {}
    for err in exc.problem.get("errors") or []:
        if isinstance(err, dict):
            name = str(err.get("field") or "").split(".")[-1]
            if name and name not in out:
                out[name] = str(err.get("message") or "")
    return out
