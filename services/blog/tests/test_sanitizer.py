"""The sanitiser against the OWASP XSS filter-evasion cheat sheet, and as a fixed point (Hypothesis)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quark_blog.render import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, LINK_REL, html_to_text, render_body, sanitize_html

# Vectors from the OWASP "XSS Filter Evasion Cheat Sheet" (and a few classics it links to).
OWASP_VECTORS = [
    "<SCRIPT SRC=https://cdn.jsdelivr.net/gh/Moksh45/host-xss.rocks/index.js></SCRIPT>",
    "javascript:/*--></title></style></textarea></script></xmp><svg/onload='+/\"/+/onmouseover=1/+/[*/[]/+alert(1)//'>",
    "<IMG SRC=\"javascript:alert('XSS');\">",
    "<IMG SRC=javascript:alert('XSS')>",
    "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    "<IMG SRC=javascript:alert(&quot;XSS&quot;)>",
    "<IMG SRC=`javascript:alert(\"RSnake says, 'XSS'\")`>",
    '<a onmouseover="alert(document.cookie)">xxs link</a>',
    "<a onmouseover=alert(document.cookie)>xxs link</a>",
    '<IMG """><SCRIPT>alert("XSS")</SCRIPT>"\\>',
    "<IMG SRC=javascript:alert(String.fromCharCode(88,83,83))>",
    "<IMG SRC=# onmouseover=\"alert('xxs')\">",
    "<IMG SRC= onmouseover=\"alert('xxs')\">",
    "<IMG onmouseover=\"alert('xxs')\">",
    '<IMG SRC=/ onerror="alert(String.fromCharCode(88,83,83))"></img>',
    '<img src=x onerror="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112'
    "&#0000116&#0000058&#0000097&#0000108&#0000101&#0000114&#0000116&#0000040&#0000039&#0000088&#0000083"
    '&#0000083&#0000039&#0000041">',
    "<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;&#97;&#108;&#101;&#114;&#116;&#40;"
    "&#39;&#88;&#83;&#83;&#39;&#41;>",
    "<IMG SRC=&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116"
    "&#0000058&#0000097&#0000108&#0000101&#0000114&#0000116&#0000040&#0000039&#0000088&#0000083&#0000083"
    "&#0000039&#0000041>",
    "<IMG SRC=&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A&#x61&#x6C&#x65&#x72&#x74&#x28&#x27"
    "&#x58&#x53&#x53&#x27&#x29>",
    "<IMG SRC=\"jav\tascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x09;ascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x0A;ascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x0D;ascript:alert('XSS');\">",
    "<IMG SRC=\" &#14;  javascript:alert('XSS');\">",
    '<SCRIPT/XSS SRC="http://xss.rocks/xss.js"></SCRIPT>',
    '<BODY onload!#$%&()*~+-_.,:;?@[/|\\]^`=alert("XSS")>',
    '<SCRIPT/SRC="http://xss.rocks/xss.js"></SCRIPT>',
    '<<SCRIPT>alert("XSS");//\\<</SCRIPT>',
    "<SCRIPT SRC=http://xss.rocks/xss.js?< B >",
    "<SCRIPT SRC=//xss.rocks/.j>",
    "<IMG SRC=\"`<javascript:alert>`('XSS')\"",
    "<iframe src=http://xss.rocks/scriptlet.html <",
    '</TITLE><SCRIPT>alert("XSS");</SCRIPT>',
    '<INPUT TYPE="IMAGE" SRC="javascript:alert(\'XSS\');">',
    "<BODY BACKGROUND=\"javascript:alert('XSS')\">",
    "<IMG DYNSRC=\"javascript:alert('XSS')\">",
    "<IMG LOWSRC=\"javascript:alert('XSS')\">",
    "<STYLE>li {list-style-image: url(\"javascript:alert('XSS')\");}</STYLE><UL><LI>XSS</br>",
    "<IMG SRC='vbscript:msgbox(\"XSS\")'>",
    "<svg/onload=alert('XSS')>",
    "<BODY ONLOAD=alert('XSS')>",
    "<BGSOUND SRC=\"javascript:alert('XSS');\">",
    "<BR SIZE=\"&{alert('XSS')}\">",
    '<LINK REL="stylesheet" HREF="javascript:alert(\'XSS\');">',
    "<STYLE>@import'http://xss.rocks/xss.css';</STYLE>",
    '<META HTTP-EQUIV="Link" Content="<http://xss.rocks/xss.css>; REL=stylesheet">',
    '<STYLE>BODY{-moz-binding:url("http://xss.rocks/xssmoz.xml#xss")}</STYLE>',
    "<IMG STYLE=\"xss:expr/*XSS*/ession(alert('XSS'))\">",
    "<STYLE TYPE=\"text/javascript\">alert('XSS');</STYLE>",
    "<STYLE>.XSS{background-image:url(\"javascript:alert('XSS')\");}</STYLE><A CLASS=XSS></A>",
    '<STYLE type="text/css">BODY{background:url("javascript:alert(\'XSS\')")}</STYLE>',
    '<XSS STYLE="behavior: url(xss.htc);">',
    '<META HTTP-EQUIV="refresh" CONTENT="0;url=javascript:alert(\'XSS\');">',
    '<META HTTP-EQUIV="refresh" CONTENT="0;url=data:text/html base64,PHNjcmlwdD5hbGVydCgnWFNTJyk8L3NjcmlwdD4K">',
    "<IFRAME SRC=\"javascript:alert('XSS');\"></IFRAME>",
    '<IFRAME SRC=# onmouseover="alert(document.cookie)"></IFRAME>',
    "<FRAMESET><FRAME SRC=\"javascript:alert('XSS');\"></FRAMESET>",
    "<TABLE BACKGROUND=\"javascript:alert('XSS')\">",
    "<TABLE><TD BACKGROUND=\"javascript:alert('XSS')\">",
    "<DIV STYLE=\"background-image: url(javascript:alert('XSS'))\">",
    "<DIV STYLE=\"background-image:\\0075\\0072\\006C\\0028'\\006a\\0061\\0076\\0061\\0073\\0063\\0072\\0069"
    "\\0070\\0074\\003a\\0061\\006c\\0065\\0072\\0074\\0028.1027\\0058.1053\\0053\\0027\\0029'\\0029\">",
    "<DIV STYLE=\"width: expression(alert('XSS'));\">",
    "<BASE HREF=\"javascript:alert('XSS');//\">",
    '<OBJECT TYPE="text/x-scriptlet" DATA="http://xss.rocks/scriptlet.html"></OBJECT>',
    '<EMBED SRC="data:image/svg+xml;base64,PHN2ZyB4bWxuczpzdmc9Imh0dH A6Ly93d3cudzMub3JnLzIwMDAvc3ZnIiB4bWxucz0i"'
    ' type="image/svg+xml" AllowScriptAccess="always"></EMBED>',
    '<SCRIPT a=">" SRC="httx://xss.rocks/xss.js"></SCRIPT>',
    '<SCRIPT =">" SRC="httx://xss.rocks/xss.js"></SCRIPT>',
    '<SCRIPT a=`>` SRC="httx://xss.rocks/xss.js"></SCRIPT>',
    '<SCRIPT>document.write("<SCRI");</SCRIPT>PT SRC="httx://xss.rocks/xss.js"></SCRIPT>',
    "<A HREF=\"javascript:document.location='http://www.google.com/'\">XSS</A>",
    '<A HREF="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">XSS</A>',
    '<a href="jAvAsCrIpT&colon;alert(1)">x</a>',
    '<a href="&#x6A;avascript:alert(1)">x</a>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>",
    "<form action=javascript:alert(1)><input type=submit></form>",
    "<details open ontoggle=alert(1)>",
    '<video><source onerror="alert(1)"></video>',
    '<!--<img src="--><img src=x onerror=alert(1)//">',
    "[click](javascript:alert(1))",
    "[click](JAVASCRIPT:alert(1))",
    "![img](javascript:alert(1))",
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<javascript:alert(1)>",
]


class _Audit(HTMLParser):
    """Parses sanitiser output like a browser tokeniser would and records every real tag and attribute."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"tag <{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name in ("style", "srcdoc", "formaction", "action", "background"):
                self.problems.append(f"attribute {name} on <{tag}>")
            if name not in ALLOWED_ATTRIBUTES.get(tag, set()) and not (tag == "a" and name == "rel"):
                self.problems.append(f"attribute {name} on <{tag}> not allowed")
            if name in ("href", "src", "cite") and value is not None:
                v = "".join(value.split()).lower()
                head = re.split(r"[/?#]", v, maxsplit=1)[0]
                if ":" in head and head.split(":", 1)[0] not in ("http", "https", "mailto"):
                    self.problems.append(f"url {value!r}")
            if tag == "a" and name == "rel" and value != LINK_REL:
                self.problems.append(f"rel {value!r}")


def assert_safe(out: str) -> None:
    audit = _Audit()
    audit.feed(out)
    audit.close()
    assert not audit.problems, f"{audit.problems} in {out!r}"
    # Scripts cannot hide in text either: the raw output never contains an unescaped "<script".
    assert "<script" not in out.lower()


def test_vector_list_is_substantial() -> None:
    assert len(OWASP_VECTORS) >= 40


@pytest.mark.parametrize("vector", OWASP_VECTORS)
@pytest.mark.parametrize("body_format", ["html", "markdown"])
def test_owasp_vector_is_neutralised(vector: str, body_format: str) -> None:
    out = render_body(vector, body_format)  # type: ignore[arg-type]
    assert_safe(out)
    assert sanitize_html(out) == out


def test_safe_markup_survives_and_links_get_rel() -> None:
    out = render_body(
        "# Title\n\nSee [the docs](https://example.org/x?a=1&b=2) and ![cat](https://img.example/c.png)\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n~~old~~ `code`",
        "markdown",
    )
    assert "<h1>Title</h1>" in out
    assert f'<a href="https://example.org/x?a=1&amp;b=2" rel="{LINK_REL}">the docs</a>' in out
    assert '<img src="https://img.example/c.png" alt="cat">' in out
    assert "<table>" in out and "<s>old</s>" in out and "<code>code</code>" in out


def test_existing_rel_and_target_are_replaced() -> None:
    out = sanitize_html('<a href="https://e.x" rel="opener" target="_blank">x</a>')
    assert out == f'<a href="https://e.x" rel="{LINK_REL}">x</a>'


def test_plain_text_extraction() -> None:
    assert html_to_text(render_body("<p>a &amp; b</p><p>c<br>d</p><script>x()</script>", "html")) == "a & b\nc\nd"


html_fragments = st.lists(
    st.one_of(
        st.text(max_size=20),
        st.sampled_from(
            [
                "<a href='javascript:x'>",
                '<a href="https://e.x">',
                "</a>",
                "<p>",
                "</p>",
                "<b>",
                "</b>",
                "<img src=x onerror=y>",
                "<script>",
                "</script>",
                "<table>",
                "<tr>",
                "<td>",
                "</table>",
                "<style>",
                "<!--",
                "-->",
                "<svg>",
                "<math>",
                "<div>",
                "</div>",
                "<ul><li>",
                "&amp;",
                "&lt;",
                "<",
                ">",
                '"',
                "'",
                "<br/>",
                "<pre>",
                "<code>",
                "<select><option>",
                "<noscript>",
                "<template>",
                "<textarea>",
                "<title>",
                "<xmp>",
                "<plaintext>",
                "<iframe>",
                "<h1>",
            ]
        ),
    ),
    max_size=30,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(html_fragments)
def test_sanitising_twice_equals_once(raw: str) -> None:
    once = sanitize_html(raw)
    assert sanitize_html(once) == once
    assert_safe(once)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_markdown_render_is_safe_for_any_text(raw: str) -> None:
    out = render_body(raw, "markdown")
    assert sanitize_html(out) == out
    assert_safe(out)

