"""The client against the sandbox over real HTTP: auth, reads, paging, errors, gateway/TLS."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import (
    IbkrAuthError,
    IbkrClient,
    IbkrClientConfig,
    IbkrConfigError,
    IbkrConnectionError,
    IbkrError,
    IbkrErrorCode,
    IbkrRequestError,
    IbkrValidationError,
)

MakeClient = Callable[..., IbkrClient]


def test_end_to_end_auth_accounts_summary_and_every_position(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox)
    status = client.connect()
    assert status.authenticated and status.connected and not status.competing

    accounts = client.list_accounts()
    assert [a.account_id for a in accounts] == ["DU1234567", "DU2345678", "U3456789"]
    assert [a.type for a in accounts] == ["DEMO", "DEMO", "INDIVIDUAL"]
    assert client.portfolio.is_paper("DU1234567") and not client.portfolio.is_paper("U3456789")

    summary = client.account_summary("DU1234567")
    assert summary.net_liquidation and summary.net_liquidation > 0
    assert summary.metrics["accountcode"].value == "DU1234567"
    assert 0 < (summary.amount("cushion") or 0) < 1

    positions = client.all_positions("DU1234567")
    assert len(positions) == 273
    assert len({p.conid for p in positions}) == 273
    assert all(p.account_id == "DU1234567" and p.quantity > 0 for p in positions)
    gross = sum(p.market_value or 0 for p in positions)
    assert abs(gross - (summary.amount("grosspositionvalue") or 0)) < Decimal("0.01") * len(positions)

    ledger = client.account_ledger("DU1234567")
    assert abs((ledger.entries["BASE"].net_liquidation_value or 0) - summary.net_liquidation) < Decimal(
        "0.01"
    )

    stats = fresh_sandbox.stats()
    assert (stats["token_requests"], stats["tokens_issued"], stats["sso_sessions"], stats["ssodh_inits"]) == (
        1,
        1,
        1,
        1,
    )
    paths = stats["paths"]
    assert [paths.get(f"GET /v1/api/portfolio/DU1234567/positions/{n}") for n in range(4)] == [1, 1, 1, None]
    assert paths["GET /v1/api/iserver/accounts"] == 1  # the pre-flight
    assert paths["GET /v1/api/portfolio/accounts"] == 1  # portfolio pre-flight done once
    assert stats["http_401"] == 0


def test_default_account_and_small_account_paging(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox)
    assert client.account_summary().account_id == "DU1234567"  # the connection's account_id
    assert len(client.all_positions("DU2345678")) == 6
    assert fresh_sandbox.stats()["paths"]["GET /v1/api/portfolio/DU2345678/positions/0"] == 1


def test_generic_request_escape_hatch(fresh_sandbox: RunningSandbox, make_client: MakeClient) -> None:
    client = make_client(fresh_sandbox)
    body = client.request("GET", "/iserver/accounts")
    assert body["accounts"] == ["DU1234567", "DU2345678", "U3456789"]
    assert client.request("post", "tickle")["iserver"]["authStatus"]["authenticated"] is True
    with pytest.raises(IbkrValidationError, match="path"):
        client.request("GET", "https://evil.example/steal")
    with pytest.raises(IbkrValidationError, match="method"):
        client.request("FETCH", "/tickle")


def test_unknown_account_is_a_request_error_with_ibkr_text(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox)
    with pytest.raises(IbkrRequestError) as excinfo:
        client.account_summary("DU9999999")
    err = excinfo.value
    assert err.status == 400
    assert err.endpoint == "/v1/api/portfolio/DU9999999/summary"
    assert err.ibkr_error == "Bad Request: accountId is not valid: DU9999999"


def test_wrong_key_raises_auth_error_with_status_and_endpoint(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    other = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    client = make_client(fresh_sandbox, private_key=other)
    with pytest.raises(IbkrAuthError) as excinfo:
        client.connect()
    err = excinfo.value
    assert err.status == 401 and err.endpoint == "/oauth2/api/v1/token" and err.ibkr_code == "invalid_client"
    assert "signature verification failed" in str(err)
    assert client.sessions.store.load(client.session_key) is None  # nothing half-made was shared


def test_wrong_kid_and_wrong_credential(fresh_sandbox: RunningSandbox, make_client: MakeClient) -> None:
    with pytest.raises(IbkrAuthError, match="unknown key id"):
        make_client(fresh_sandbox, client_key_id="rotated").connect()
    with pytest.raises(IbkrAuthError) as excinfo:
        make_client(fresh_sandbox, credential="someone").connect()
    assert excinfo.value.endpoint == "/gw/api/v1/sso-sessions" and excinfo.value.status == 403


def test_bad_config_fails_before_any_request(fresh_sandbox: RunningSandbox, make_client: MakeClient) -> None:
    with pytest.raises(IbkrConfigError, match=r"^ip:"):
        make_client(fresh_sandbox, ip="")
    client = make_client(fresh_sandbox, account_id=None)
    with pytest.raises(IbkrValidationError, match="account_id"):
        client.account_summary()
    with pytest.raises(IbkrValidationError, match="account_id"):
        client.all_positions("../../etc")
    assert fresh_sandbox.stats()["requests_total"] == 0


def test_lost_session_is_recovered_once(fresh_sandbox: RunningSandbox, make_client: MakeClient) -> None:
    client = make_client(fresh_sandbox)
    client.list_accounts()
    # The server forgets the session (as after IBKR's nightly reset): the next call recovers.
    fresh_sandbox.reset()
    summary = client.account_summary("DU2345678")
    assert summary.account_id == "DU2345678"
    stats = fresh_sandbox.stats()
    # Two 401s: the failed call, and the status probe that tells "SSO session gone" (open a new
    # one) from "brokerage tier gone" (re-init it). One new session, one init; never a loop.
    assert stats["http_401"] == 2 and stats["sso_sessions"] == 1 and stats["ssodh_inits"] == 1


def test_closing_the_client_ends_a_request_waiting_for_its_pacing_slot_and_sends_nothing(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    """A trigger is cancelled while its poll waits out ``/iserver/account/trades`` (IBKR: 1 per
    5 s): closing its client ends the wait at once, with an error, instead of holding the thread
    5 s and then sending the request from a closed client for nobody."""
    client = make_client(fresh_sandbox)
    client.request("GET", "/iserver/account/trades")  # the bucket's next slot is 5.5 s away
    failures: list[BaseException] = []

    def poll() -> None:
        try:
            client.request("GET", "/iserver/account/trades")
        except BaseException as exc:  # the thread's outcome is what the test checks
            failures.append(exc)

    waiting = threading.Thread(target=poll)
    waiting.start()
    time.sleep(0.3)
    client.close()
    waiting.join(timeout=2)
    assert not waiting.is_alive(), "the request kept waiting for its slot after the client closed"
    (failure,) = failures
    assert isinstance(failure, IbkrError) and failure.code is IbkrErrorCode.CLIENT_CLOSED, failure
    assert "nothing was sent" in str(failure)
    assert fresh_sandbox.stats()["paths"]["GET /v1/api/iserver/account/trades"] == 1


def test_call_after_server_side_logout_opens_a_new_session(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox)
    client.connect()
    client.request("POST", "/logout")
    assert client.request("GET", "/iserver/accounts")["accounts"]
    assert fresh_sandbox.stats()["sso_sessions"] == 2


def test_unreachable_host_is_a_connection_error() -> None:
    client = IbkrClient(
        IbkrClientConfig.from_mapping(
            {
                "auth_type": "gateway",
                "base_url": "http://127.0.0.1:9",
                "session_cache": "memory",
                "max_retries": 0,
            }
        )
    )
    with pytest.raises(IbkrConnectionError) as excinfo:
        client.connect()
    assert excinfo.value.code == "connection"


@pytest.mark.xdist_group("gateway-sandbox")  # one worker starts the gateway sandbox
def test_gateway_mode_over_tls_with_its_ca(gateway_sandbox: RunningSandbox) -> None:
    gateway_sandbox.reset()
    conn = gateway_sandbox.connection
    assert conn["host"].startswith("https://localhost:")
    with IbkrClient(
        IbkrClientConfig.from_mapping({"base_url": conn["host"], "session_cache": "memory", **conn["extra"]})
    ) as client:
        assert client.connect().authenticated
        assert len(client.all_positions("DU1234567")) == 273
    stats = gateway_sandbox.stats()
    assert stats["token_requests"] == 0 and stats["sso_sessions"] == 0 and stats["ssodh_inits"] == 1
    # No Authorization header is ever sent in gateway mode.
    assert stats.get("requests_with_authorization", 0) == 0


@pytest.mark.xdist_group("gateway-sandbox")  # one worker starts the gateway sandbox
def test_tls_verification_is_on_by_default(gateway_sandbox: RunningSandbox) -> None:
    conn = gateway_sandbox.connection
    client = IbkrClient(
        IbkrClientConfig.from_mapping(
            {"base_url": conn["host"], "auth_type": "gateway", "session_cache": "memory"}
        )
    )
    with pytest.raises(IbkrConnectionError) as excinfo:
        client.connect()
    assert excinfo.value.code == "tls" and "verify" in str(excinfo.value)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{conn['host']}/__sandbox__/health", timeout=5)
