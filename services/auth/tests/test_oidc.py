"""Sign-in with an OpenID Connect provider, against a local provider started by the test (real HTTP: discovery,
JWKS, authorize, token — `oidc_provider.py`), exactly as auth talks to Google. Positive journey, linking, and
the negative cases: wrong / replayed state, replayed code, wrong nonce, another key, expired, wrong audience,
wrong issuer, unverified provider email, an identity linked to another account, the last way to sign in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from auth_testkit import API, Auth, bearer, problem
from oidc_provider import CLIENT_SECRET, LocalOidcProvider

APP = "http://web.test"
REDIRECT = f"{APP}/login/oidc/local/callback"


@pytest.fixture
def provider() -> Iterator[LocalOidcProvider]:
    local = LocalOidcProvider().start()
    yield local
    local.stop()


@pytest.fixture
async def auth(start_auth: Callable[..., Any], provider: LocalOidcProvider) -> Auth:
    result: Auth = await start_auth(app_url=APP, oidc_providers=provider.settings())
    result.rt.settings.secret_store().put("auth/oidc/local", {"client_secret": CLIENT_SECRET})
    return result


async def authorize(auth: Auth, headers: dict[str, str] | None = None, intent: str = "login") -> dict[str, str]:
    """Start at auth, follow the provider's authorization endpoint over HTTP; the redirect's code and state."""
    resp = await auth.client.post(f"{API}/oidc/local/authorize", json={"redirect_uri": REDIRECT, "intent": intent},
                                  headers=headers or {})
    assert resp.status_code == 200, resp.text
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(resp.json()["authorization_url"])
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT + "?")
    query = parse_qs(urlsplit(location).query)
    return {"code": query["code"][0], "state": query["state"][0]}


async def callback(auth: Auth, grant: dict[str, str], headers: dict[str, str] | None = None) -> httpx.Response:
    return await auth.client.post(f"{API}/oidc/local/callback", json=grant, headers=headers or {})


async def sign_up(auth: Auth, username: str = "jane_d") -> dict[str, Any]:
    first = await callback(auth, await authorize(auth))
    assert first.status_code == 200, first.text
    assert first.json()["signup_required"] is True
    resp = await auth.client.post(f"{API}/oidc/signup", json={"signup_token": first.json()["signup_token"],
                                                              "username": username})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def test_authorization_url_carries_pkce_state_and_nonce(auth: Auth) -> None:
    resp = await auth.client.post(f"{API}/oidc/local/authorize", json={"redirect_uri": REDIRECT})
    query = parse_qs(urlsplit(resp.json()["authorization_url"]).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["state"] == [resp.json()["state"]] and len(query["nonce"][0]) >= 32
    assert query["scope"] == ["openid email profile"] and query["client_id"] == ["quark-test-client"]
    listed = (await auth.client.get(f"{API}/oidc/providers")).json()["items"]
    assert listed == [{"name": "local", "display_name": "Local ID", "kind": "oidc"}]


async def test_first_sign_in_creates_an_account_with_the_chosen_username_then_links_by_subject(auth: Auth) -> None:
    first = await callback(auth, await authorize(auth))
    offer = first.json()
    assert offer["suggested_username"] == "jane" and offer["email"] == "jane@example.org"
    assert offer["email_verified"] is True
    bad = await auth.client.post(f"{API}/oidc/signup", json={"signup_token": offer["signup_token"],
                                                             "username": "admin"})
    problem(bad, 422)  # reserved: the person chooses another, with the same signup token
    tokens = (await auth.client.post(f"{API}/oidc/signup", json={"signup_token": offer["signup_token"],
                                                                 "username": "jane_d"})).json()
    user = tokens["user"]
    assert user["username"] == "jane_d" and user["email"] == "jane@example.org" and user["email_verified"]
    assert user["has_password"] is False
    again = await auth.client.post(f"{API}/oidc/signup", json={"signup_token": offer["signup_token"],
                                                               "username": "jane_e"})
    problem(again, 400, "invalid-state")  # the signup token is spent
    types = await auth.outbox_types()
    assert "quark.auth.identity_linked" in types and "quark.auth.user_registered" in types
    assert "quark.auth.email_requested" not in types  # the provider verified the address

    later = await callback(auth, await authorize(auth))  # found again by (provider, subject)
    assert later.status_code == 200 and later.json()["user"]["id"] == user["id"]
    me = await auth.client.get(f"{API}/oidc/identities", headers=bearer(later.json()["access_token"]))
    assert [(i["provider"], i["subject"]) for i in me.json()["items"]] == [("local", "248289761001")]


async def test_wrong_and_replayed_state_are_refused(auth: Auth) -> None:
    grant = await authorize(auth)
    problem(await callback(auth, {**grant, "state": "x" * 43}), 400, "invalid-state")
    assert (await callback(auth, grant)).status_code == 200
    problem(await callback(auth, grant), 400, "invalid-state")  # single use


async def test_replayed_code_is_refused_by_the_provider(auth: Auth, provider: LocalOidcProvider) -> None:
    grant = await authorize(auth)
    assert (await callback(auth, grant)).status_code == 200
    fresh = await authorize(auth)
    problem(await callback(auth, {**fresh, "code": grant["code"]}), 401, "provider-sign-in-failed")


@pytest.mark.parametrize(("tweak", "why"), [("nonce", "nonce"), ("other_key", "signature"), ("expired", "exp"),
                                            ("audience", "aud"), ("issuer", "iss")])
async def test_bad_id_tokens_are_refused(auth: Auth, provider: LocalOidcProvider, tweak: str, why: str) -> None:
    provider.tweaks.add(tweak)
    resp = await callback(auth, await authorize(auth))
    assert why in problem(resp, 401, "provider-sign-in-failed")["detail"]
    assert "signup_token" not in resp.text
    assert await auth.sql("SELECT 1 FROM external_identities") == []


async def test_unverified_provider_email_is_not_trusted(auth: Auth, provider: LocalOidcProvider) -> None:
    provider.person["email_verified"] = False
    user = (await sign_up(auth))["user"]
    assert user["email"] == "jane@example.org" and user["email_verified"] is False
    assert [m["email"] for m in await auth.emails("verify_email")] == ["jane@example.org"]


async def test_an_existing_account_is_never_linked_by_email(auth: Auth) -> None:
    """Account takeover through a provider email: the provider's address already belongs to alice."""
    alice = await auth.register("alice", email="jane@example.org")
    first = (await callback(auth, await authorize(auth))).json()
    assert first["signup_required"] is True  # not signed in as alice
    tokens = (await auth.client.post(f"{API}/oidc/signup", json={"signup_token": first["signup_token"],
                                                                 "username": "jane_d"})).json()
    assert tokens["user"]["id"] != alice["id"] and tokens["user"]["email"] is None


async def test_link_and_unlink_and_an_identity_linked_elsewhere(auth: Auth) -> None:
    _, alice = await auth.user("alice")
    grant = await authorize(auth, headers=alice, intent="link")
    linked = await callback(auth, grant, headers=alice)
    assert linked.status_code == 200 and linked.json()["linked"] is True
    assert (await callback(auth, await authorize(auth))).json()["user"]["username"] == "alice"  # signs in as alice

    _, bob = await auth.user("bob")
    taken = await callback(auth, await authorize(auth, headers=bob, intent="link"), headers=bob)
    problem(taken, 409, "identity-linked")
    assert len(await auth.sql("SELECT 1 FROM external_identities")) == 1

    assert (await auth.client.delete(f"{API}/oidc/identities/local", headers=alice)).status_code == 204
    assert "quark.auth.identity_unlinked" in await auth.outbox_types()
    assert (await callback(auth, await authorize(auth))).json()["signup_required"] is True


async def test_link_needs_a_signed_in_caller(auth: Auth) -> None:
    resp = await auth.client.post(f"{API}/oidc/local/authorize", json={"redirect_uri": REDIRECT, "intent": "link"})
    problem(resp, 401)


async def test_the_last_way_to_sign_in_cannot_be_unlinked(auth: Auth) -> None:
    tokens = await sign_up(auth)
    resp = await auth.client.delete(f"{API}/oidc/identities/local", headers=bearer(tokens["access_token"]))
    problem(resp, 409, "last-sign-in-method")


async def test_redirect_uri_must_be_the_stations(auth: Auth) -> None:
    for uri in ("https://evil.example/cb", "http://web.test.evil.example/cb"):
        resp = await auth.client.post(f"{API}/oidc/local/authorize", json={"redirect_uri": uri})
        problem(resp, 422, "redirect-uri-not-allowed")
    problem(await auth.client.post(f"{API}/oidc/nope/authorize", json={"redirect_uri": REDIRECT}), 404)


async def test_refresh_rotation_holds_for_provider_sessions(auth: Auth) -> None:
    tokens = await sign_up(auth)
    fresh = await auth.client.post(f"{API}/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert fresh.status_code == 200
    reused = await auth.client.post(f"{API}/refresh", json={"refresh_token": tokens["refresh_token"]})
    problem(reused, 401, "refresh-token-reused")


async def test_github_preset_uses_the_user_api_and_a_verified_primary_email(start_auth: Callable[..., Any],
                                                                            provider: LocalOidcProvider) -> None:
    """OAuth2 without OIDC (GitHub): no ID token is trusted; the subject is the user API's id and the email the
    primary *verified* one of /user/emails. The provider double serves GitHub-style endpoints."""
    auth: Auth = await start_auth(app_url=APP, oidc_providers=provider.github_settings())
    auth.rt.settings.secret_store().put("auth/oidc/github", {"client_secret": CLIENT_SECRET})
    resp = await auth.client.post(f"{API}/oidc/github/authorize", json={"redirect_uri": REDIRECT})
    query = parse_qs(urlsplit(resp.json()["authorization_url"]).query)
    assert "nonce" not in query and query["scope"] == ["read:user user:email"]
    assert query["code_challenge_method"] == ["S256"]
    async with httpx.AsyncClient() as browser:
        back = parse_qs(urlsplit((await browser.get(resp.json()["authorization_url"])).headers["location"]).query)
    offer = (await auth.client.post(f"{API}/oidc/github/callback",
                                    json={"code": back["code"][0], "state": back["state"][0]})).json()
    assert offer["signup_required"] is True and offer["suggested_username"] == "octocat"
    assert offer["email"] == "octo@example.org" and offer["email_verified"] is True
    tokens = (await auth.client.post(f"{API}/oidc/signup", json={"signup_token": offer["signup_token"],
                                                                 "username": "octocat"})).json()
    assert tokens["user"]["email_verified"] is True
    rows = await auth.sql("SELECT provider, subject FROM external_identities")
    assert [(r.provider, r.subject) for r in rows] == [("github", "583231")]


async def test_github_without_a_verified_primary_email_gives_none(start_auth: Callable[..., Any],
                                                                 provider: LocalOidcProvider) -> None:
    provider.github_emails = [{"email": "octo@example.org", "primary": True, "verified": False}]
    auth: Auth = await start_auth(app_url=APP, oidc_providers=provider.github_settings())
    auth.rt.settings.secret_store().put("auth/oidc/github", {"client_secret": CLIENT_SECRET})
    resp = await auth.client.post(f"{API}/oidc/github/authorize", json={"redirect_uri": REDIRECT})
    async with httpx.AsyncClient() as browser:
        back = parse_qs(urlsplit((await browser.get(resp.json()["authorization_url"])).headers["location"]).query)
    offer = (await auth.client.post(f"{API}/oidc/github/callback",
                                    json={"code": back["code"][0], "state": back["state"][0]})).json()
    assert offer["email"] is None and offer["email_verified"] is False
