"""Checking and normalising what people send: profile edits, links, locales, free text."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from quark_sdk.errors import InvalidInput

DISPLAY_NAME_COLUMN_MAX = 100


@dataclass(frozen=True)
class Limits:
    """The configurable profile limits (from UserSettings)."""

    display_name_max_length: int = 100
    bio_max_length: int = 500
    links_max_count: int = 5
    link_max_length: int = 300



_LOCALE = re.compile(
    r"^(?P<lang>[A-Za-z]{2,3})(?:-(?P<script>[A-Za-z]{4}))?(?:-(?P<region>[A-Za-z]{2}|[0-9]{3}))?"
    r"(?P<variants>(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*)$"
)
_MEDIA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9\-\u00a1-\uffff]{1,63}(?<!-)$")


def _has_control(value: str, allowed: str = "") -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs", "Co") and ch not in allowed for ch in value)


def _text_param(value: str, field: str) -> str:
    """A free-text query parameter on its way into SQL: control characters (NUL above all) are refused."""
    if _has_control(value):
        raise InvalidInput(f"{field} must not contain control characters", field=field)
    return value


def normalize_locale(value: str) -> str:
    """BCP 47-ish: language[-Script][-REGION][-variant…], canonical casing ('EN_us' → 'en-US')."""
    m = _LOCALE.fullmatch(value.strip().replace("_", "-"))
    if m is None:
        raise InvalidInput("locale must be a language tag like 'en', 'pt-BR' or 'zh-Hant-TW'", field="locale")
    out = m["lang"].lower()
    if m["script"]:
        out += "-" + m["script"].title()
    if m["region"]:
        out += "-" + m["region"].upper()
    if m["variants"]:
        out += m["variants"].lower()
    return out


def validate_link(value: str, *, field: str, max_length: int) -> str:
    link = value.strip()
    if not link:
        raise InvalidInput("link must not be empty", field=field)
    if len(link) > max_length:
        raise InvalidInput(f"link is longer than {max_length} characters", field=field)
    if _has_control(link) or any(ch.isspace() for ch in link):
        raise InvalidInput("link must not contain spaces or control characters", field=field)
    try:
        parts = urlsplit(link)
        port = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise InvalidInput("link is not a valid URL", field=field) from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput("link must be an http:// or https:// URL", field=field)
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("link must not contain credentials", field=field)
    host = parts.hostname or ""
    labels = host.split(".")
    numeric_tld = labels[-1].isdigit() and not all(label.isdigit() for label in labels)  # "a.123" is no host
    if "." not in host or numeric_tld or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise InvalidInput("link must name a host like example.com", field=field)
    if port == 0:
        raise InvalidInput("link is not a valid URL", field=field)
    return link


def validate_update(changes: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """Check and normalise a PATCH body (only the fields present); raises InvalidInput naming the field."""
    if not changes:
        raise InvalidInput("nothing to update: send at least one field")
    clean: dict[str, Any] = {}
    if "display_name" in changes:
        name = changes["display_name"]
        if name is not None:
            name = unicodedata.normalize("NFC", name).strip()
            if not name:
                raise InvalidInput("display name must not be blank (send null to clear it)", field="display_name")
            if _has_control(name):
                raise InvalidInput("display name must not contain control characters", field="display_name")
            if len(name) > limits.display_name_max_length:
                raise InvalidInput(f"display name is longer than {limits.display_name_max_length} characters",
                                   field="display_name")
        clean["display_name"] = name
    if "bio" in changes:
        bio = unicodedata.normalize("NFC", (changes["bio"] or "").replace("\r\n", "\n")).strip()
        if _has_control(bio, allowed="\n\t"):
            raise InvalidInput("bio must not contain control characters", field="bio")
        if len(bio) > limits.bio_max_length:
            raise InvalidInput(f"bio is longer than {limits.bio_max_length} characters", field="bio")
        clean["bio"] = bio
    if "links" in changes:
        links = changes["links"] or []
        if len(links) > limits.links_max_count:
            raise InvalidInput(f"at most {limits.links_max_count} links", field="links")
        clean_links = [validate_link(v, field=f"links.{i}", max_length=limits.link_max_length)
                       for i, v in enumerate(links)]
        if len({v.lower() for v in clean_links}) != len(clean_links):
            raise InvalidInput("links must not repeat", field="links")
        clean["links"] = clean_links
    if "locale" in changes:
        clean["locale"] = None if changes["locale"] is None else normalize_locale(changes["locale"])
    if "privacy" in changes:
        if changes["privacy"] is None:
            raise InvalidInput("privacy must be 'public' or 'followers'", field="privacy")
        clean["privacy"] = changes["privacy"]
    if "avatar_media_id" in changes:
        media_id = changes["avatar_media_id"]
        if media_id is not None and not _MEDIA_ID.fullmatch(media_id):
            raise InvalidInput("avatar_media_id is not a media id", field="avatar_media_id")
        clean["avatar_media_id"] = media_id
    return clean


def _clean_display_name(value: str | None) -> str | None:
    """For names arriving in events: never reject, just make them fit."""
    if value is None:
        return None
    name = "".join(ch for ch in unicodedata.normalize("NFC", value) if not _has_control(ch)).strip()
    return name[:DISPLAY_NAME_COLUMN_MAX] or None


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
