"""Two connections of one IBKR user, and a Test that must not break running DAGs (issue 28).

``ibkr_a`` and ``ibkr_b`` log in as the same sandbox user through differently written hosts
(127.0.0.1 and localhost), so they have sessions of their own in one session cache, as an OAuth
2.0 and an OAuth 1.0a connection, or a Connect IBKR one, of one user do. IBKR allows that user one
brokerage session; the sandbox counts every takeover.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrAuthError, IbkrCompetingSessionError


@pytest.fixture
def two_connections(monkeypatch: pytest.MonkeyPatch, fresh_sandbox: RunningSandbox) -> Iterator[None]:
    conn = json.loads(fresh_sandbox.connection_json())
    other = {**conn, "host": conn["host"].replace("127.0.0.1", "localhost")}
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_A", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_B", json.dumps(other))
    yield


def _takeovers(sandbox: RunningSandbox) -> int:
    return int(sandbox.stats().get("competing_takeovers", 0))


def test_a_test_never_takes_over_another_connections_brokerage_session(
    two_connections: None, fresh_sandbox: RunningSandbox
) -> None:
    from ibkr_provider.hooks.ibkr import IbkrHook

    with IbkrHook(ibkr_conn_id="ibkr_a") as running:  # a DAG of ibkr_a is running
        running.get_conn().list_accounts()
        ok, message = IbkrHook(ibkr_conn_id="ibkr_b").test_connection()
        assert ok, message
        assert message.startswith("Credentials accepted by http://localhost:")
        assert "proven by a fresh client assertion, access token and SSO session (oauth2)" in message
        assert "held by connection ibkr_a (host " in message and "did not take it over" in message
        assert _takeovers(fresh_sandbox) == 0
        assert running.get_conn().connect().healthy  # the running DAG's session is untouched
        ok, message = IbkrHook(ibkr_conn_id="ibkr_a").test_connection()
        assert ok and "proven by the shared session, opened with this connection's credentials" in message


def test_a_second_connections_task_says_it_would_displace_the_first_and_does_not(
    two_connections: None, fresh_sandbox: RunningSandbox
) -> None:
    from ibkr_provider.hooks.ibkr import IbkrHook

    with IbkrHook(ibkr_conn_id="ibkr_a") as first, IbkrHook(ibkr_conn_id="ibkr_b") as second:
        first.get_conn().list_accounts()
        with pytest.raises(IbkrCompetingSessionError) as excinfo:
            second.get_conn().account_summary("DU2345678")
        refusal = excinfo.value
        assert refusal.permanent and "connection ibkr_a (host " in str(refusal)
        assert "this connection would displace it and does not" in str(refusal)
        assert "ibkr-provider reconnect" in str(refusal)
        assert _takeovers(fresh_sandbox) == 0 and first.get_conn().connect().healthy


@pytest.mark.slow
def test_reconnect_moves_the_session_and_the_loser_names_the_taker(
    two_connections: None, fresh_sandbox: RunningSandbox
) -> None:
    from ibkr_provider.cli import reconnect
    from ibkr_provider.hooks.ibkr import IbkrHook

    with IbkrHook(ibkr_conn_id="ibkr_a") as first:
        first.get_conn().list_accounts()
        said = reconnect("ibkr_b")  # a person moves the session on purpose
        assert said.startswith(
            "ibkr_b now holds the IBKR brokerage session: authenticated; accounts: DU1234567"
        )
        assert _takeovers(fresh_sandbox) == 1
        ok, message = IbkrHook(ibkr_conn_id="ibkr_a").test_connection()  # the stale Test is red now
        assert not ok and "IBKR no longer considers the shared session authenticated" in message
        assert "connection ibkr_b (host " in message and "of this deployment took over" in message
        with pytest.raises(IbkrCompetingSessionError, match=r"connection ibkr_b .* took over"):
            first.get_conn().orders.live_orders()  # an /iserver call: not blamed on TWS
    assert reconnect("ibkr_a").startswith("ibkr_a now holds the IBKR brokerage session: authenticated")
    with IbkrHook(ibkr_conn_id="ibkr_a") as again:
        assert again.test_connection()[0]


def test_a_test_with_a_wrong_key_fails_even_with_a_session_cached(
    monkeypatch: pytest.MonkeyPatch, fresh_sandbox: RunningSandbox
) -> None:
    """Same client id and user (so the same cached session), a random key: the fingerprint
    differs, so the Test signs with the key in front of it and IBKR refuses it."""
    from ibkr_provider.hooks.ibkr import IbkrHook

    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", fresh_sandbox.connection_json())
    with IbkrHook() as good:
        assert good.test_connection()[0]
        random_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        monkeypatch.setenv(
            "AIRFLOW_CONN_IBKR_WRONG", fresh_sandbox.connection_json(private_key=random_key.decode())
        )
        ok, message = IbkrHook(ibkr_conn_id="ibkr_wrong").test_connection()
        assert not ok and message.startswith("IbkrAuthError"), message
        # and a task with the wrong key does not use (or end) the good session
        with IbkrHook(ibkr_conn_id="ibkr_wrong") as wrong, pytest.raises(IbkrAuthError):
            wrong.get_conn().account_summary("DU2345678")
        assert good.get_conn().connect().healthy and _takeovers(fresh_sandbox) == 0
