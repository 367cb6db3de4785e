"""The pages' Jinja2 environment reads a dict's keys first (the modules' JSON answers), with Jinja's own meaning,
and writes `{{ ... }}` out through `output_escape`: the same text as markupsafe's escaping."""

from __future__ import annotations

from types import SimpleNamespace

from jinja2 import Environment
from markupsafe import Markup, escape

from quark_web.pagekit import ENV, PageEnvironment, output_escape

CASES = [
    ("{{ d.title }}", {"d": {"title": "<b>Hi</b>"}}),  # a key, escaped
    ("{{ d.missing is defined }}|{{ d.missing }}", {"d": {"title": "x"}}),  # a missing key: undefined
    ("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {"d": {"a": 1, "b": 2}}),  # dict's own methods
    ("{{ d.items is callable }}", {"d": {"items": [1, 2, 3]}}),  # named like a method: the method, as before
    ("{{ d.get('a') }}|{{ d.get('z', 'none') }}", {"d": {"a": 1}}),
    ("{{ o.name }}|{{ o.nope is defined }}", {"o": SimpleNamespace(name="object")}),  # objects: attributes
    ("{{ d.x.y }}", {"d": {"x": {"y": "nested"}}}),
    # what is written out: escaped as markupsafe escapes, whatever its type
    ("{{ a }}|{{ b }}|{{ c }}|{{ n }}|{{ f }}|{{ t }}|{{ z }}|{{ u }}",
     {"a": "<a href='x'>&\"</a>", "b": Markup("<i>ok</i>"), "c": ["<x>", 1], "n": -42, "f": 1.5, "t": True, "z": None}),
    ("{% set s %}<b>{{ a }}</b>{% endset %}{{ s }}|{{ s | length }}", {"a": "<&>"}),  # a block's output stays markup
    ("{% macro m(x) %}<p>{{ x }}</p>{% endmacro %}{{ m(a) }}{{ m(a) | upper }}", {"a": "<q>"}),
    ("{{ a ~ b }}|{{ a | e }}|{{ a | safe }}|{{ (a ~ '') | length }}", {"a": "<&>", "b": Markup("<br>")}),
    ("{% autoescape false %}{{ a }}{% endautoescape %}{{ a }}", {"a": "<&>"}),
    # calls of `_` and of the template's macros are plain calls: the same output as through Context.call
    ("{{ _('Hello <you>') }}|{% for x in [1, 2] %}{{ _('n') }}{{ x }}{% endfor %}", {"_": lambda s: s.upper()}),
    ("{% macro m(a, b='B') %}[{{ a }}{{ b }}]{% endmacro %}{{ m(1) }}{{ m('<', 2) }}{{ m(1, b=3) }}{{ m(*[4]) }}"
     "{% for x in 'xy' %}{{ m(loop.index, x) }}{% endfor %}{{ m(**{'a': 5}) }}", {}),
    ("{% macro m() %}<{{ caller() }}>{% endmacro %}{% call m() %}in{% endcall %}{{ m(caller=_) }}",
     {"_": lambda: "x"}),
    ("{% macro m(x) %}{{ x }}{% endmacro %}{% set m = d.get %}{{ m('a') }}", {"d": {"a": "A"}}),  # reassigned
    ("{% macro outer(_) %}{{ _('a') }}{% endmacro %}{{ outer(f) }}", {"f": lambda s: s * 2}),  # `_` as a param
    ("{% set _ = f %}{{ _('b') }}", {"f": lambda s: s * 3}),
]


def test_dict_keys_read_as_jinja_reads_them() -> None:
    plain = Environment(autoescape=True)
    fast = PageEnvironment(autoescape=True)
    for source, context in CASES:
        assert fast.from_string(source).render(context) == plain.from_string(source).render(context), source
    assert isinstance(ENV, PageEnvironment)


def test_output_escape_writes_what_escape_writes() -> None:
    class Html:
        def __html__(self) -> str:
            return "<raw>"

    class Weird(int):
        def __str__(self) -> str:
            return "<7>"

    for value in ("", "plain", "<&>\"'", Markup("<b>"), Html(), 0, -1, 2**70, True, 1.25, None, Weird(7), ["<"]):
        assert output_escape(value) == str(escape(value)), value


def test_one_message_renders_alone_as_in_the_chat() -> None:
    """messenger/one.html (HTMX answers) and the chat's list render the same macro."""
    me, other = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
    message = {"id": 7, "seq": 7, "sender_id": me, "body": "hello <world>", "created_at": "2026-12-05T12:00:00+00:00",
               "edited_at": None, "deleted": False, "hidden": False, "reply_to": None, "attachments": ["m1"]}
    context = {"_": lambda s: s, "me": me, "members": {me: "reader", other: "writer"}, "read_seq": 7,
               "chat_id": "c", "csrf": "t", "csrf_field": "csrf_token"}
    alone = ENV.get_template("messenger/one.html").render({**context, "m": message})
    listed = ENV.get_template("messenger/older.html").render({**context, "messages": [message], "older": None})
    assert alone.strip() == listed.strip()
    assert 'id="msg-7"' in alone and "hello &lt;world&gt;" in alone and 'data-read="true"' in alone
    assert "/messages/attachment/m1?size=thumb" in alone
