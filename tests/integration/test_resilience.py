"""Recovery, competing logins, keep-alive, pacing and retries, against the sandbox over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import (
    IbkrClient,
    IbkrCompetingSessionError,
    IbkrConnectionError,
    IbkrRateLimitError,
    IbkrRequestError,
    IbkrSessionError,
)
from tests.support.other_login import login_elsewhere

MakeClient = Callable[..., IbkrClient]


# ---------------------------------------------------------------------------- recovery
def test_dropped_brokerage_session_is_recovered_once(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox)
    assert client.request("GET", "/iserver/accounts")["accounts"]
    fresh_sandbox.drop_brokerage_sessions()  # as IBKR's nightly reset does
    assert client.request("GET", "/iserver/accounts")["accounts"]
    stats = fresh_sandbox.stats()
    # Same SSO session, brokerage tier re-initialised once (without competing), no new login.
    assert stats["sso_sessions"] == 1 and stats["tokens_issued"] == 1
    assert stats["ssodh_inits"] == 2
    # set-up pre-flight, first call, "no bridge", recovery pre-flight, the retried call
    assert stats["paths"]["GET /v1/api/iserver/accounts"] == 5


def test_recovery_by_one_process_is_reused_by_the_others(
    fresh_sandbox: RunningSandbox, tmp_path: Path, make_client: MakeClient
) -> None:
    cache = f"file://{tmp_path / 'cache'}"
    first, second = (
        make_client(fresh_sandbox, session_cache=cache),
        make_client(fresh_sandbox, session_cache=cache),
    )
    first.request("GET", "/iserver/accounts")
    assert second.session().generation == 1
    fresh_sandbox.reset()  # the SSO session is gone (as after IBKR's nightly reset)
    # The second process's request is on its way with the dead bearer (the sandbox holds it
    # for 2 s) when the first process meets the 401 and recovers the session.
    fresh_sandbox.inject_fault("/v1/api/iserver/accounts", "delay", method="GET", delay=2.0)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(second.request, "GET", "/iserver/accounts")
        time.sleep(0.5)
        first.request("POST", "/tickle")  # 401, then the one recovery: generation 2
        assert slow.result(timeout=30)["accounts"]  # a real 401, then generation 2 reused
    assert second.session().generation == 2
    stats = fresh_sandbox.stats()
    assert stats["faults_fired"] == 1
    # Since the reset: one new session, opened by the first process; the second process's 401
    # led to no probe and no login of its own.
    assert stats["sso_sessions"] == 1 and stats["ssodh_inits"] == 1 and stats["token_requests"] == 1
    assert stats["paths"]["POST /v1/api/iserver/auth/status"] == 1
    assert stats["http_401"] == 3  # the second's request, the first's tickle, the first's probe


def test_a_session_that_keeps_failing_is_not_retried_in_a_loop(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox)
    client.request("GET", "/iserver/accounts")
    fresh_sandbox.inject_fault("/v1/api/portfolio/DU1234567/ledger", "401", count=5)
    with pytest.raises(IbkrSessionError) as excinfo:
        client.account_ledger("DU1234567")
    assert "not authenticated" in str(excinfo.value)
    # One failure, one recovery (status probe, no new session needed), one retry that failed: stop.
    assert fresh_sandbox.stats()["paths"]["GET /v1/api/portfolio/DU1234567/ledger"] == 2


def test_competing_login_elsewhere_is_a_distinct_error_and_not_taken_back(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    ours = make_client(fresh_sandbox)
    ours.request("GET", "/iserver/accounts")
    other = login_elsewhere(fresh_sandbox)  # e.g. the user opens TWS with the same username
    with pytest.raises(IbkrCompetingSessionError) as excinfo:
        ours.request("GET", "/iserver/accounts")
    assert "another login" in str(excinfo.value) and excinfo.value.code == "competing"
    stats = fresh_sandbox.stats()
    assert stats["competing_takeovers"] == 1
    assert stats["ssodh_inits"] == 2  # ours and the other login's: ours never took it back
    # The other login keeps its session.
    status = requests.post(
        f"{fresh_sandbox.base_url}/v1/api/iserver/auth/status",
        headers={"Authorization": f"Bearer {other}"},
        timeout=10,
    ).json()
    assert status["authenticated"] is True and status["competing"] is False


def test_compete_on_login_false_fails_instead_of_taking_over(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    login_elsewhere(fresh_sandbox)  # someone holds the brokerage session
    polite = make_client(fresh_sandbox, compete_on_login=False)
    with pytest.raises(IbkrCompetingSessionError):
        polite.connect()
    assert fresh_sandbox.stats().get("competing_takeovers", 0) == 0


# ---------------------------------------------------------------------------- keep-alive
def test_keepalive_tickles_an_idle_session_so_it_survives(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    fresh_sandbox.configure(sso_idle_timeout=3.0)
    client = make_client(fresh_sandbox, tickle_interval=1.0)
    client.request("GET", "/iserver/accounts")
    time.sleep(6.5)  # more than twice the idle timeout, with no request of ours
    assert client.request("GET", "/iserver/accounts")["accounts"]
    stats = fresh_sandbox.stats()
    tickles = stats["paths"].get("POST /v1/api/tickle", 0)
    assert 3 <= tickles <= 7  # at most IBKR's 1/s
    assert stats["http_401"] == 0 and stats["sso_sessions"] == 1
    client.close()


def test_without_keepalive_the_idle_session_expires_and_is_recovered(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    fresh_sandbox.configure(sso_idle_timeout=2.0)
    client = make_client(fresh_sandbox, tickle_interval=600)
    client.request("GET", "/iserver/accounts")
    time.sleep(3)
    assert client.request("GET", "/iserver/accounts")["accounts"]
    stats = fresh_sandbox.stats()
    assert stats["sso_sessions"] == 2 and stats["http_401"] >= 1  # the control case: it did expire


def test_keepalive_never_logs_in_again_on_its_own(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    """A keep-alive that re-logged in after its session died would take the brokerage session
    from whoever holds it now (another process, TWS). It must only tickle a live session."""
    client = make_client(fresh_sandbox, tickle_interval=1.0)
    client.request("GET", "/iserver/accounts")
    fresh_sandbox.reset()  # the session dies while the client sits idle
    time.sleep(2.6)  # a second tickle would come at about 2 s
    stats = fresh_sandbox.stats()
    assert stats["paths"].get("POST /v1/api/tickle") == 1  # one tickle found it dead, then it stopped
    assert stats["tokens_issued"] == 0 and stats["sso_sessions"] == 0 and stats["ssodh_inits"] == 0
    assert not client.keepalive_running
    # The next real request recovers the session, and keep-alive starts again.
    assert client.request("GET", "/iserver/accounts")["accounts"]
    assert client.keepalive_running


# ---------------------------------------------------------------------------- pacing
def test_per_endpoint_limits_are_paced(fresh_sandbox: RunningSandbox, make_client: MakeClient) -> None:
    client = make_client(fresh_sandbox)
    started = time.monotonic()
    for _ in range(3):
        client.request("POST", "/tickle")  # IBKR: 1 per second
    assert time.monotonic() - started >= 2.0
    assert fresh_sandbox.stats()["http_429"] == 0


# ---------------------------------------------------------------------------- retries
def test_injected_429_with_retry_after_is_absorbed(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox)
    client.connect()
    fresh_sandbox.inject_fault("/v1/api/portfolio/DU1234567/summary", "429", count=2, retry_after=1)
    started = time.monotonic()
    assert client.account_summary("DU1234567").net_liquidation
    assert time.monotonic() - started >= 2.0  # Retry-After honoured twice
    stats = fresh_sandbox.stats()
    assert stats["http_429"] == 2 and stats["paths"]["GET /v1/api/portfolio/DU1234567/summary"] == 3


@pytest.mark.parametrize("kind", ["503", "502", "504", "drop"])
def test_transient_failures_are_absorbed(
    fresh_sandbox: RunningSandbox, kind: str, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox)
    client.connect()
    fresh_sandbox.inject_fault("/v1/api/portfolio/DU1234567/ledger", kind, count=2)
    assert client.account_ledger("DU1234567").entries["BASE"]
    assert fresh_sandbox.stats()["paths"]["GET /v1/api/portfolio/DU1234567/ledger"] == 3


def test_retries_give_up_after_the_bound_and_say_what_was_tried(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox, max_retries=2)
    client.connect()
    fresh_sandbox.inject_fault("/v1/api/portfolio/DU1234567/ledger", "503", count=10)
    with pytest.raises(IbkrRequestError) as excinfo:
        client.account_ledger("DU1234567")
    message = str(excinfo.value)
    assert excinfo.value.status == 503
    assert "gave up after 3 attempt(s)" in message and "failures: 503, 503, 503" in message
    assert fresh_sandbox.stats()["paths"]["GET /v1/api/portfolio/DU1234567/ledger"] == 3


def test_retry_after_beyond_the_time_budget_stops_at_once(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox, max_retry_seconds=5)
    client.connect()
    fresh_sandbox.inject_fault("/v1/api/portfolio/DU1234567/ledger", "429", count=5, retry_after=600)
    started = time.monotonic()
    with pytest.raises(IbkrRateLimitError) as excinfo:
        client.account_ledger("DU1234567")
    assert time.monotonic() - started < 3
    assert excinfo.value.retry_after == 600 and "Retry-After 600 s" in str(excinfo.value)


def test_connection_errors_are_retried_then_reported(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox, max_retries=1)
    client.connect()
    fresh_sandbox.inject_fault("/v1/api/portfolio/DU1234567/ledger", "drop", count=5)
    with pytest.raises(IbkrConnectionError) as excinfo:
        client.account_ledger("DU1234567")
    assert "gave up after 2 attempt(s)" in str(excinfo.value)


def test_order_placement_is_never_retried_blindly(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox)
    client.connect()
    path = "/v1/api/iserver/account/DU1234567/orders"
    fresh_sandbox.inject_fault(path, "503", count=1, method="POST")
    with pytest.raises(IbkrRequestError) as excinfo:
        client.request("POST", "/iserver/account/DU1234567/orders", json={"orders": []})
    assert excinfo.value.status == 503
    assert fresh_sandbox.stats()["paths"][f"POST {path}"] == 1
    # A 429 means IBKR did not take the request, so even an order POST is retried after it.
    fresh_sandbox.inject_fault(path, "429", count=1, method="POST", retry_after=1)
    fresh_sandbox.inject_fault(path, "503", count=1, method="POST")
    with pytest.raises(IbkrRequestError):
        client.request("POST", "/iserver/account/DU1234567/orders", json={"orders": []})
    assert fresh_sandbox.stats()["paths"][f"POST {path}"] == 3
