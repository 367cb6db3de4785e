"""Who may enter which part of the console. The modules check every call again with the person's own token;
this only keeps a page from rendering for someone who could not use it (403, not a broken page).

* admin pages (users, AI): the `admin` role;
* operator pages: `admin` and `operator` together (operator is a role of its own, never implied by admin).
"""

from __future__ import annotations

from fastapi import Request

from quark_web.pagekit import Page, PageError, page_of

FORBIDDEN = "This part of the console is not open to you."


def _roles(page: Page) -> set[str]:
    return set(page.require_user().roles)


def admin_page(request: Request) -> Page:
    page = page_of(request)
    if "admin" not in _roles(page):
        raise PageError(403, FORBIDDEN)
    return page


def operator_page(request: Request) -> Page:
    page = page_of(request)
    if not {"admin", "operator"} <= _roles(page):
        raise PageError(403, FORBIDDEN)
    return page


def clean_reason(value: str | None) -> str | None:
    return (value or "").strip()[:500] or None
