"""OAuth 2.0 authorization code with PKCE and private_key_jwt, over HTTP against the sandbox as
authorization server: discovery, the consent page, the code's rules (single use, 60 s, exact
redirect URI, PKCE), client authentication (jti replay), refresh-token rotation with reuse
detection, revocation, and a user's grant opening a brokerage session through the client."""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrClient, IbkrClientConfig
from ibkr_provider.client.auth.oauth2_code import (
    AuthorizationServer,
    Pkce,
    TokenEndpoint,
    authorize_redirect,
    discover,
    endpoints_of,
    token_endpoint_of,
)
from ibkr_provider.client.errors import IbkrAuthError, IbkrConfigError, IbkrErrorCode
from ibkr_provider.client.http.transport import HttpTransport
from ibkr_provider.client.session.probe import probe
from ibkr_provider.client.session.stores.memory import MemorySessionStore
from ibkr_provider.client.settings.oauth2_user import OAuth2AppProfile
from tests.support.processes import cache_env, run_workers
from tests.support.redis_server import redis_server
from tests.support.sessions import ALL_ACCOUNTS, assert_single_flight

REDIRECT = "http://127.0.0.1:9/ibkr/connect/callback"
SECRETS: list[str] = []


def keep(secret: str) -> None:
    SECRETS.append(secret)


def app_profile(sandbox: RunningSandbox, **extra: Any) -> OAuth2AppProfile:
    conn = json.loads(sandbox.oauth2_profile_json())
    values = {"client_id": conn["login"], **conn["extra"], **extra}
    return OAuth2AppProfile.parse(values)


def endpoint(sandbox: RunningSandbox) -> tuple[TokenEndpoint, HttpTransport]:
    """The sandbox app's token endpoint, found by discovery from its profile's issuer."""
    http = HttpTransport(verify=True, timeout=10)
    profile = app_profile(sandbox)
    return token_endpoint_of(profile, endpoints_of(profile, http), secret_sink=keep), http


def consent(
    sandbox: RunningSandbox, server: AuthorizationServer, pkce: Pkce, *, accept: bool = True
) -> dict[str, str]:
    """Log in at the sandbox's authorize page and answer; returns the redirect's query."""
    url = authorize_redirect(
        server,
        client_id="sandbox-client",
        redirect_uri=REDIRECT,
        scope="sso-sessions.write",
        state="st-1",
        pkce=pkce,
    )
    page = requests.get(url, timeout=10)
    assert page.status_code == 200, page.text
    request_id = re.search(r'name="request_id" value="([^"]+)"', page.text)
    assert request_id, page.text
    answer = requests.post(
        urllib.parse.urljoin(page.url, "authorize"),
        data={
            "request_id": request_id.group(1),
            "username": "sandboxuser",
            "password": "sandbox-password",
            "decision": "accept" if accept else "deny",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def test_discovery_names_the_sandbox_endpoints(fresh_sandbox: RunningSandbox) -> None:
    server = discover(fresh_sandbox.base_url, HttpTransport(verify=True, timeout=10))
    assert server.authorize_url == f"{fresh_sandbox.base_url}/oauth2/authorize"
    assert server.token_url == f"{fresh_sandbox.base_url}/oauth2/api/v1/token"
    assert server.revocation_url == f"{fresh_sandbox.base_url}/oauth2/api/v1/revoke"


def test_a_profile_without_an_authorization_server_is_refused_by_field() -> None:
    with pytest.raises(IbkrConfigError) as refused:
        OAuth2AppProfile.parse({"client_id": "app", "ip": "127.0.0.1", "private_key": "x"})
    assert refused.value.field == "private_key"


def test_consent_code_exchange_and_rotation(fresh_sandbox: RunningSandbox) -> None:
    tokens, http = endpoint(fresh_sandbox)
    pkce = Pkce.new()
    query = consent(fresh_sandbox, tokens.server, pkce)
    assert query["state"] == "st-1" and query["code"]
    grant = tokens.exchange_code(query["code"], redirect_uri=REDIRECT, pkce=pkce, http=http)
    assert grant.refresh_token and grant.access_token
    # rotation: each refresh answers a new refresh token; the spent one stays spent
    second = tokens.refresh(grant.refresh_token, http)
    assert second.refresh_token != grant.refresh_token
    third = tokens.refresh(second.refresh_token, http)
    # a reused refresh token revokes the family: the newest one dies with it
    with pytest.raises(IbkrAuthError) as reused:
        tokens.refresh(grant.refresh_token, http)
    assert reused.value.code is IbkrErrorCode.CONSENT_REQUIRED and reused.value.permanent
    assert "Connect IBKR" in str(reused.value)
    with pytest.raises(IbkrAuthError) as family:
        tokens.refresh(third.refresh_token, http)
    assert family.value.code is IbkrErrorCode.CONSENT_REQUIRED
    stats = fresh_sandbox.stats()
    assert stats["codes_exchanged"] == 1 and stats["refreshes"] == 2 and stats["grants_refused"] == 2


def test_a_code_is_good_once_and_a_replay_revokes_its_grant(fresh_sandbox: RunningSandbox) -> None:
    tokens, http = endpoint(fresh_sandbox)
    pkce = Pkce.new()
    code = consent(fresh_sandbox, tokens.server, pkce)["code"]
    grant = tokens.exchange_code(code, redirect_uri=REDIRECT, pkce=pkce, http=http)
    with pytest.raises(IbkrAuthError, match="used before"):
        tokens.exchange_code(code, redirect_uri=REDIRECT, pkce=pkce, http=http)
    with pytest.raises(IbkrAuthError):
        tokens.refresh(grant.refresh_token, http)


@pytest.mark.parametrize("broken", ["verifier", "redirect_uri", "expired"])
def test_a_code_needs_its_verifier_its_redirect_uri_and_its_minute(
    fresh_sandbox: RunningSandbox, broken: str
) -> None:
    tokens, http = endpoint(fresh_sandbox)
    pkce = Pkce.new()
    if broken == "expired":
        fresh_sandbox.configure(code_lifetime=0.3)
    code = consent(fresh_sandbox, tokens.server, pkce)["code"]
    redirect, verifier = REDIRECT, pkce
    if broken == "verifier":
        verifier = Pkce.new()
    elif broken == "redirect_uri":
        redirect = REDIRECT + "/elsewhere"
    else:
        time.sleep(0.6)
    expected = {"verifier": "PKCE", "redirect_uri": "redirect_uri", "expired": "expired"}[broken]
    with pytest.raises(IbkrAuthError, match=expected):
        tokens.exchange_code(code, redirect_uri=redirect, pkce=verifier, http=http)


def test_deny_and_a_request_without_pkce_go_back_with_an_error(fresh_sandbox: RunningSandbox) -> None:
    tokens, _ = endpoint(fresh_sandbox)
    denied = consent(fresh_sandbox, tokens.server, Pkce.new(), accept=False)
    assert denied["error"] == "access_denied" and denied["state"] == "st-1" and "code" not in denied
    no_pkce = requests.get(
        tokens.server.authorize_url,
        params={
            "response_type": "code",
            "client_id": "sandbox-client",
            "redirect_uri": REDIRECT,
            "state": "x",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert no_pkce.status_code == 303 and "error=invalid_request" in no_pkce.headers["location"]


def test_a_replayed_client_assertion_is_refused(fresh_sandbox: RunningSandbox) -> None:
    tokens, http = endpoint(fresh_sandbox)
    pkce = Pkce.new()
    grant = tokens.exchange_code(
        consent(fresh_sandbox, tokens.server, pkce)["code"], redirect_uri=REDIRECT, pkce=pkce, http=http
    )
    auth = tokens._client_auth()
    form = {"grant_type": "refresh_token", "refresh_token": grant.refresh_token, **auth}
    first = requests.post(tokens.server.token_url, data=form, timeout=10)
    assert first.status_code == 200, first.text
    form["refresh_token"] = first.json()["refresh_token"]
    again = requests.post(tokens.server.token_url, data=form, timeout=10)
    assert again.status_code == 401 and "jti" in again.json()["error_description"]


def test_revocation_ends_the_grant(fresh_sandbox: RunningSandbox) -> None:
    tokens, http = endpoint(fresh_sandbox)
    pkce = Pkce.new()
    grant = tokens.exchange_code(
        consent(fresh_sandbox, tokens.server, pkce)["code"], redirect_uri=REDIRECT, pkce=pkce, http=http
    )
    assert tokens.revoke(grant.refresh_token, http)
    with pytest.raises(IbkrAuthError):
        tokens.refresh(grant.refresh_token, http)


def user_client(
    sandbox: RunningSandbox, refresh_token: str, token_url: str, **extra: str
) -> Callable[[], IbkrClient]:
    conn = json.loads(sandbox.oauth2_profile_json())
    values = {
        "base_url": conn["host"],
        "client_id": conn["login"],
        **{k: v for k, v in conn["extra"].items() if k != "issuer"},
        "refresh_token": refresh_token,
        "token_url": token_url,
        "session_cache": "memory",
        **extra,
    }
    return lambda: IbkrClient(IbkrClientConfig.from_mapping(values), secret_sink=keep)


@pytest.mark.slow  # the accounts pre-flight is paced at 1 per 5 s
def test_a_users_grant_opens_a_brokerage_session_and_renews_single_flight(
    fresh_sandbox: RunningSandbox,
) -> None:
    MemorySessionStore.clear()
    tokens, http = endpoint(fresh_sandbox)
    pkce = Pkce.new()
    grant = tokens.exchange_code(
        consent(fresh_sandbox, tokens.server, pkce)["code"], redirect_uri=REDIRECT, pkce=pkce, http=http
    )
    build = user_client(fresh_sandbox, grant.refresh_token, tokens.server.token_url)
    with build() as client:
        accounts = [a.account_id for a in client.list_accounts()]
        assert "DU1234567" in accounts
    # the connection still holds the first refresh token; the cache holds its successor
    with build() as client:
        client.sessions.reconnect()
        assert client.list_accounts()
    stats = fresh_sandbox.stats()
    assert stats["refreshes"] == 2 and stats.get("grants_refused", 0) == 0 and stats["sso_sessions"] == 2


def test_a_refused_grant_asks_for_consent_once_and_then_fails_at_once(fresh_sandbox: RunningSandbox) -> None:
    MemorySessionStore.clear()
    tokens, http = endpoint(fresh_sandbox)
    pkce = Pkce.new()
    grant = tokens.exchange_code(
        consent(fresh_sandbox, tokens.server, pkce)["code"], redirect_uri=REDIRECT, pkce=pkce, http=http
    )
    tokens.refresh(grant.refresh_token, http)  # spends it outside the connection: a reuse next
    build = user_client(fresh_sandbox, grant.refresh_token, tokens.server.token_url)
    for _ in range(2):
        with build() as client, pytest.raises(IbkrAuthError) as refused:
            client.list_accounts()
        assert refused.value.code is IbkrErrorCode.CONSENT_REQUIRED and refused.value.permanent
    assert fresh_sandbox.stats()["grants_refused"] == 1  # the second try never asked the server


def test_a_revoked_grant_ends_its_open_session(fresh_sandbox: RunningSandbox) -> None:
    """A third party replays the spent refresh token: the server revokes the grant, the session
    the grant opened stops working, and the connection asks for a new consent."""
    MemorySessionStore.clear()
    tokens, http = endpoint(fresh_sandbox)
    pkce = Pkce.new()
    code = consent(fresh_sandbox, tokens.server, pkce)["code"]
    grant = tokens.exchange_code(code, redirect_uri=REDIRECT, pkce=pkce, http=http)
    with user_client(fresh_sandbox, grant.refresh_token, tokens.server.token_url)() as client:
        assert client.account_summary("DU1234567")
        with pytest.raises(IbkrAuthError):  # spent when the client opened its session
            tokens.refresh(grant.refresh_token, http)
        # the Test: the shared session IBKR ended is nobody's; proving the grant afresh fails
        with pytest.raises(IbkrAuthError) as tested:
            probe(client.sessions)
        with pytest.raises(IbkrAuthError) as refused:
            client.account_summary("DU1234567")
    assert tested.value.code is refused.value.code is IbkrErrorCode.CONSENT_REQUIRED


@pytest.mark.slow  # eight processes
@pytest.mark.parametrize("cache", ["file", "redis"])
def test_eight_processes_renew_one_users_grant_once(
    fresh_sandbox: RunningSandbox, tmp_path: Path, cache: str
) -> None:
    """A refresh token is good once: eight processes that need the session at the same moment
    (through the file cache of one host, or Redis as several hosts do) renew the user's grant
    exactly once and all use its session."""
    tokens, http = endpoint(fresh_sandbox)
    pkce = Pkce.new()
    code = consent(fresh_sandbox, tokens.server, pkce)["code"]
    grant = tokens.exchange_code(code, redirect_uri=REDIRECT, pkce=pkce, http=http)
    conn = json.loads(fresh_sandbox.oauth2_profile_json())
    extra = {k: v for k, v in conn["extra"].items() if k != "issuer"}
    conn["extra"] = {**extra, "refresh_token": grant.refresh_token, "token_url": tokens.server.token_url}
    with contextlib.ExitStack() as stack:
        if cache == "redis":
            conn["extra"]["session_cache"] = stack.enter_context(redis_server(tmp_path / "redis"))
        env = {"AIRFLOW_CONN_IBKR_DEFAULT": json.dumps(conn), **cache_env(tmp_path / "cache")}
        fresh_sandbox.inject_fault("/oauth2/api/v1/token", "delay", delay=1.0)  # they overlap
        results = run_workers(8, "accounts", env)
    assert_single_flight(results)
    assert all(r["accounts"] == ALL_ACCOUNTS for r in results)
    stats = fresh_sandbox.stats()
    assert stats["refreshes"] == 1 and stats["user_sso_sessions"] == 1, stats
    assert stats.get("grants_refused", 0) == 0, stats


def test_a_users_token_can_be_the_bearer_itself(fresh_sandbox: RunningSandbox) -> None:
    """``user_session`` ``access_token``: no SSO session is opened; the user's token is sent as
    the bearer (whether IBKR allows it is unpublished, so it is a setting); anything else is
    refused by field."""
    MemorySessionStore.clear()
    tokens, http = endpoint(fresh_sandbox)
    pkce = Pkce.new()
    code = consent(fresh_sandbox, tokens.server, pkce)["code"]
    grant = tokens.exchange_code(code, redirect_uri=REDIRECT, pkce=pkce, http=http)
    build = user_client(
        fresh_sandbox, grant.refresh_token, tokens.server.token_url, user_session="access_token"
    )
    with build() as client:
        assert client.account_summary("DU1234567").net_liquidation
    stats = fresh_sandbox.stats()
    assert stats.get("user_sso_sessions", 0) == 0 and stats["user_token_sessions"] == 1, stats
    with pytest.raises(IbkrConfigError) as refused:
        user_client(fresh_sandbox, grant.refresh_token, tokens.server.token_url, user_session="cookie")()
    assert refused.value.field == "user_session"
