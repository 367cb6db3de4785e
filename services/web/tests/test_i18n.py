"""English and Russian: every string the pages show has its Russian translation; the language comes
from the cookie, then Accept-Language."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from quark_web import errors
from quark_web.catalog_ru import RU
from quark_web.i18n import negotiate, translator
from quark_web.pages import messenger, reading, social

PACKAGE = Path(__file__).resolve().parents[1] / "quark_web"
VALUES = ["public", "followers", "private", "draft", "scheduled", "published", "pending", "approved", "rejected",
          "neutral", "friendly", "formal", "playful", "technical", "persuasive", "short", "medium", "long"]


def shown_strings() -> set[str]:
    found: set[str] = set()
    for path in (PACKAGE / "templates").rglob("*.html"):
        found.update(m.group(2) for m in re.finditer(r"_\((['\"])(.*?)\1\)", path.read_text()))
    for table in (errors.BY_CODE, errors.BY_STATUS, errors.FLASHES, reading.REACTION_NAMES,
                  messenger.NOTE_TEXT, social.EDGE_TITLES):
        found.update(table.values())
    found.update(title for title, _ in social.OWN_LISTS.values())
    found.update(["We could not find anyone with that username.", "Write a message first.", "Something new"])
    found.update([errors.CSRF_FAILED, errors.FORM_INVALID, errors.NOT_FOUND, errors.GENERIC,
                  errors.module_down("blog")])
    found.update(m.group(1) for m in re.finditer(r'(?:title|intro)="([^"]+)"',
                                                 (PACKAGE / "pages" / "reading.py").read_text()))
    found.update(VALUES)
    return found


def test_every_shown_string_has_a_russian_translation() -> None:
    missing = sorted(s for s in shown_strings() if s not in RU)
    assert missing == []
    assert all(v.strip() for v in RU.values())


@pytest.mark.parametrize(("cookie", "header", "lang"), [
    (None, "ru-RU,ru;q=0.9,en;q=0.8", "ru"), (None, "en-GB,en;q=0.9,ru;q=0.8", "en"), (None, "de, ru;q=0.5", "ru"),
    (None, "fr, de", "en"), (None, None, "en"), ("ru", "en", "ru"), ("xx", "ru", "ru"), (None, "ru;q=bad, en", "en"),
])
def test_language_choice(cookie: str | None, header: str | None, lang: str) -> None:
    assert negotiate(cookie, header) == lang


def test_missing_strings_fall_back_to_english() -> None:
    assert translator("ru")("Sign in") == "Войти"
    assert translator("ru")("Not in the catalogue") == "Not in the catalogue"
    assert translator("en")("Sign in") == "Sign in"
