"""Pure functions: input validation and normalisation, cursors, the deadlock retry."""

import pytest
from sqlalchemy.exc import DBAPIError

from quark_sdk.errors import InvalidInput
from quark_user import common
from quark_user.validation import Limits, normalize_locale, validate_link, validate_update


@pytest.mark.parametrize(("given", "expected"), [
    ("en", "en"), ("EN_us", "en-US"), ("pt-br", "pt-BR"), ("zh-hant-tw", "zh-Hant-TW"), ("es-419", "es-419"),
    ("de-DE-1996", "de-DE-1996"), ("sl-rozaj", "sl-rozaj"), (" fr ", "fr"),
])
def test_locales_are_normalised(given: str, expected: str) -> None:
    assert normalize_locale(given) == expected


@pytest.mark.parametrize("bad", ["", "e", "english", "en-", "en--US", "en-US-!!", "12", "en US", "x" * 40])
def test_bad_locales_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_locale(bad)


@pytest.mark.parametrize("good", [
    "https://example.com", "http://example.com/a?b=c#d", "https://sub.example.co.uk:8443/x",
    "https://bücher.example/", "http://192.0.2.1/page",
])
def test_good_links(good: str) -> None:
    assert validate_link(good, field="links.0", max_length=300) == good


@pytest.mark.parametrize("bad", [
    "example.com", "ftp://example.com", "javascript:alert(1)", "data:text/html,hi", "http://", "https://.com",
    "https://exa mple.com", "https://user@example.com", "http://example.com:0/", "http://example.com:99999/",
    "https://-bad-.example", "https://example.123", "http://[::1]/", "mailto:a@example.com", "https://a..b.example",
])
def test_bad_links(bad: str) -> None:
    with pytest.raises(InvalidInput):
        validate_link(bad, field="links.0", max_length=300)


def test_update_validation_names_the_field() -> None:
    with pytest.raises(InvalidInput) as info:
        validate_update({"links": ["https://ok.example", "nope"]}, Limits())
    assert info.value.extra["errors"] == [{"field": "links.1", "message": "link must be an http:// or https:// URL"}]
    assert validate_update({"bio": None, "display_name": " A\u0301 "}, Limits()) == {"bio": "", "display_name": "Á"}


def test_cursors_round_trip_and_are_kind_checked() -> None:
    cursor = common.cursor_for("followers", 42)
    assert common.seq_after("followers", cursor) == 42
    for bad in ("", "!!!", common.cursor_for("following", 42), common.cursor_for("followers", "-1")):
        with pytest.raises(InvalidInput):
            common.seq_after("followers", bad)


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


async def test_deadlock_victims_are_retried() -> None:
    calls: list[int] = []

    @common.retry_transaction
    async def flaky(fail_times: int, sqlstate: str = "40P01") -> str:
        calls.append(1)
        if len(calls) <= fail_times:
            raise DBAPIError("UPDATE …", None, _PgError(sqlstate))
        return "done"

    assert await flaky(4) == "done" and len(calls) == 5  # up to 5 attempts, with a jittered backoff
    calls.clear()
    with pytest.raises(DBAPIError):
        await flaky(5)
    calls.clear()
    with pytest.raises(DBAPIError):  # not a deadlock: no retry
        await flaky(1, "23505")
    assert len(calls) == 1
