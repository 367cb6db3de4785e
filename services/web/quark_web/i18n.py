"""English and Russian for the pages: a gettext-style catalogue of our own (English text is the key).

The language comes from the `lang` cookie (the switch in the footer sets it), else the browser's
Accept-Language, else English. A string missing from a catalogue shows in English.
"""

from __future__ import annotations

from collections.abc import Callable

from quark_web.catalog_ru import RU

LANGUAGES = {"en": "English", "ru": "Русский"}
DEFAULT = "en"
CATALOGS: dict[str, dict[str, str]] = {"en": {}, "ru": RU}

Translator = Callable[[str], str]


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    if cookie in LANGUAGES:
        return cookie
    best, best_q = DEFAULT, -1.0
    for part in (accept_language or "").split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower().split("-")[0]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if lang in LANGUAGES and q > best_q:
            best, best_q = lang, q
    return best


def translator(lang: str) -> Translator:
    catalog = CATALOGS.get(lang, {})

    def gettext(message: str) -> str:
        return catalog.get(message, message)

    return gettext
