"""Turning what authors write into safe HTML, plain text, excerpts and slugs.

Markdown is rendered by markdown-it-py (CommonMark + tables + strikethrough; raw HTML
inside Markdown is allowed and then sanitised like any HTML body). Every HTML that
leaves this module went through nh3 (Ammonia) with an allow-list: no script, no
style, no event-handler attributes, no iframes/objects/forms, URLs only http(s),
mailto and relative, and every link gets `rel="noopener nofollow ugc"`.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Literal

import nh3
from markdown_it import MarkdownIt

BodyFormat = Literal["markdown", "html"]

ALLOWED_TAGS = frozenset(
    {
        "a",
        "abbr",
        "b",
        "blockquote",
        "br",
        "caption",
        "cite",
        "code",
        "dd",
        "del",
        "details",
        "div",
        "dl",
        "dt",
        "em",
        "figcaption",
        "figure",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "ins",
        "kbd",
        "li",
        "mark",
        "ol",
        "p",
        "pre",
        "q",
        "s",
        "samp",
        "small",
        "span",
        "strong",
        "sub",
        "summary",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "u",
        "ul",
    }
)
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "img": {"src", "alt", "title", "width", "height"},
    "ol": {"start"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align", "scope"},
    "blockquote": {"cite"},
    "q": {"cite"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener nofollow ugc"

_markdown = MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)

_BLOCK_END = re.compile(
    r"</(?:p|div|h[1-6]|li|blockquote|pre|tr|td|th|table|ul|ol|dl|dt|dd|figcaption|figure|details|summary|caption)>"
    r"|<br\s*/?>|<hr\s*/?>",
    re.IGNORECASE,
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\s*\n\s*")
_IMG = re.compile(r"<img\b[^>]*\bsrc=", re.IGNORECASE)


_URL_ATTRIBUTES = frozenset({"href", "src", "cite"})
_URL_HEAD = re.compile(r"[/?#]")


def _url_filter(tag: str, attribute: str, value: str) -> str | None:
    """Beyond nh3's scheme check: anything that looks like `something:` must be an allowed scheme, so odd
    spellings that nh3 would keep as "relative" (a backtick, an entity) never reach a browser."""
    if attribute not in _URL_ATTRIBUTES:
        return value
    head = _URL_HEAD.split(value.strip(), maxsplit=1)[0]
    if ":" in head and head.split(":", 1)[0].lower() not in URL_SCHEMES:
        return None
    return value


def sanitize_html(raw: str) -> str:
    """The one sanitiser: allow-listed tags and attributes, safe URLs, rel on links.

    Sanitising is repeated until the output is stable (normally once: nh3's output is
    already a fixed point), so `sanitize_html(sanitize_html(x)) == sanitize_html(x)` holds.
    """
    out = _CONTROL.sub("", raw)
    for _ in range(4):
        cleaned = nh3.clean(
            out,
            tags=set(ALLOWED_TAGS),
            attributes={k: set(v) for k, v in ALLOWED_ATTRIBUTES.items()},
            url_schemes=set(URL_SCHEMES),
            link_rel=LINK_REL,
            strip_comments=True,
            attribute_filter=_url_filter,
        )
        if cleaned == out:
            break
        out = cleaned
    return out


def render_body(source: str, body_format: BodyFormat) -> str:
    """Safe HTML for a post or comment body."""
    source = _CONTROL.sub("", source)
    raw = _markdown.render(source) if body_format == "markdown" else source
    return sanitize_html(raw).strip()


def html_to_text(safe_html: str) -> str:
    """Plain text of (already sanitised) HTML: blocks become lines, entities decoded, spaces collapsed."""
    marked = _BLOCK_END.sub(lambda m: m.group(0) + "\n", safe_html)
    stripped = nh3.clean(marked, tags=set(), strip_comments=True)
    text = _CONTROL.sub("", html.unescape(stripped))
    text = _SPACES.sub(" ", text)
    return _BLANK_LINES.sub("\n", text).strip()


def has_content(safe_html: str, text: str) -> bool:
    return bool(text.strip()) or bool(_IMG.search(safe_html))


def make_excerpt(text: str, limit: int = 280) -> str:
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


def clean_plain(text: str) -> str:
    """User-supplied plain text (titles, excerpts, reasons): no control characters, trimmed."""
    return _SPACES.sub(" ", _CONTROL.sub("", text)).strip()


def slugify(title: str, max_length: int = 80) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    if len(slug) > max_length:
        slug = slug[:max_length]
        if "-" in slug[max_length // 2 :]:
            slug = slug[: slug.rfind("-")]
        slug = slug.strip("-")
    return slug or "post"
