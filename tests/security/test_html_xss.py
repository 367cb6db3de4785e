"""Stored XSS through the API (OWASP API8, API10 as far as HTML is concerned).

The sanitiser itself is proven by the blog's suite (services/blog/tests/test_sanitizer.py: the OWASP
filter-evasion vectors in HTML and Markdown, an HTML-parser audit of every tag/attribute/URL, and the
Hypothesis properties "sanitising twice equals once" and "any Markdown renders safe"). This test
does not repeat them: it sends the same vector list through the running blog (posts, comments, edits)
and audits what the API serves, with an independent, regex-based auditor (a second opinion that does
not share the blog suite's parser).
"""

from __future__ import annotations

import html
import importlib.util
import re
from pathlib import Path
from typing import Any

from security_testkit import REPO, spec, start

from quark_sdk.testing import QuarkTestEnv


def vectors() -> list[str]:
    """The blog suite's vector list, loaded by path (a test module, not importable by name)."""
    path = REPO / "services" / "blog" / "tests" / "test_sanitizer.py"
    loaded = importlib.util.spec_from_file_location("quark_blog_sanitizer_vectors", path)
    assert loaded is not None and loaded.loader is not None
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    out: list[str] = module.OWASP_VECTORS
    return out


TAG = re.compile(r"<[a-zA-Z][^>]*>")
EVENT_ATTR = re.compile(r"""[\s"'/]on[a-z]+\s*=""", re.IGNORECASE)
URL_ATTR = re.compile(
    r"""\b(?:href|src|cite|action|formaction|background|poster|data)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""",
    re.IGNORECASE)
SAFE_SCHEMES = ("http", "https", "mailto")


def audit(out: str) -> list[str]:
    problems = []
    if "<script" in out.lower():
        problems.append("<script")
    for tag in TAG.findall(out):
        names_only = re.sub(r"\"[^\"]*\"|'[^']*'", '""', tag)  # attribute values are not attributes
        if EVENT_ATTR.search(names_only):
            problems.append(f"event handler in {tag!r}")
        for raw in URL_ATTR.findall(tag):
            value = html.unescape(raw.strip("\"'"))
            compact = re.sub(r"[\x00-\x20]", "", value).lower()
            head = re.split(r"[/?#]", compact, maxsplit=1)[0]
            if ":" in head and head.split(":", 1)[0] not in SAFE_SCHEMES:
                problems.append(f"url {value!r} in {tag!r}")
            if compact.startswith(("javascript:", "data:", "vbscript:")):
                problems.append(f"url {value!r}")
    return problems


def served_html(body: dict[str, Any]) -> str:
    """The field clients insert as HTML (title and excerpt are plain text: a client escapes them)."""
    return str(body.get("body_html") or "")


async def test_xss_vectors_never_come_back_executable(quark: QuarkTestEnv, tmp_path: Path) -> None:
    svc = await start(quark, spec("blog"), tmp_path)
    author, reader = await svc.user(), await svc.user()
    c = svc.client
    host = (await c.post("/api/v1/posts", json={"title": "host", "body": "host", "publish": True},
                         headers=author.headers)).json()
    problems: list[str] = []
    stored = 0
    for i, vector in enumerate(vectors()):
        fmt = "html" if i % 2 == 0 else "markdown"
        body = f"before {vector} after"  # text around it, so even a vector reduced to nothing is stored
        resp = await c.post("/api/v1/posts", json={"title": f"v{i}", "body": body, "format": fmt,
                                                    "publish": True}, headers=author.headers)
        assert resp.status_code == 201, resp.text
        stored += 1
        post = resp.json()
        read = (await c.get(f"/api/v1/posts/{post['id']}", headers=reader.headers)).json()
        problems += [f"post {i}: {p}" for p in audit(served_html(post)) + audit(served_html(read))]
        edited = await c.patch(f"/api/v1/posts/{post['id']}", json={"body": vector + body, "format": fmt},
                               headers=author.headers)
        if edited.status_code == 200:
            problems += [f"edit {i}: {p}" for p in audit(served_html(edited.json()))]
        comment = await c.post(f"/api/v1/posts/{host['id']}/comments", json={"body": body, "format": fmt},
                               headers=reader.headers)
        if comment.status_code == 201:
            problems += [f"comment {i}: {p}" for p in audit(served_html(comment.json()))]
    listed = await c.get("/api/v1/feed/public", params={"limit": 100}, headers=reader.headers)
    for item in listed.json()["items"]:
        problems += [f"feed: {p}" for p in audit(served_html(item))]
    comments = await c.get(f"/api/v1/posts/{host['id']}/comments", params={"limit": 100})
    for item in comments.json()["items"]:
        problems += [f"comment list: {p}" for p in audit(served_html(item))]
    assert stored == len(vectors())
    assert not problems, problems[:20]


def test_the_auditor_catches_what_it_should() -> None:
    """The auditor is not vacuous: each kind of dangerous output is reported."""
    assert audit("<p>ok <a href=\"https://e.x\" rel=\"nofollow\">x</a></p>") == []
    assert audit("<img src=\"onmouseover=&quot;x&quot;\">") == []  # a (relative) URL that merely reads "on…="
    for bad in ("<SCRIPT>x</SCRIPT>", "<img src=x onerror=alert(1)>", "<a href=\"javascript:alert(1)\">x</a>",
                "<a href=\"&#106;avascript:alert(1)\">x</a>", "<img src=\"data:image/svg+xml;base64,AAAA\">",
                "<a href=\"java\tscript:x\">x</a>", "<svg/onload=alert(1)>", "<b title=\"x\" onclick='y'>"):
        assert audit(bad), bad
