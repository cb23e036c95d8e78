"""Flex and the OAuth 1.0a consent calls go through the provider's transport: one User-Agent, one
error mapping, and an unreachable host is a connection error (retried), never an auth error."""

from __future__ import annotations

import json
import socket

import pytest
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client.auth.oauth1a.consent import ConsumerProfile, request_token
from ibkr_provider.client.errors import IbkrAuthError, IbkrConnectionError, IbkrErrorCode
from ibkr_provider.client.http.retries import RetryPolicy
from ibkr_provider.client.http.transport import USER_AGENT, HttpTransport
from ibkr_provider.client.settings.oauth1a import consumer_realm, required_rsa_key
from ibkr_provider.flex.client import FlexClient


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _quick() -> HttpTransport:
    return HttpTransport(
        verify=True, timeout=2.0, retry_policy=RetryPolicy(max_attempts=2, initial_backoff=0.01)
    )


def _profile(
    sandbox: RunningSandbox, *, base_url: str | None = None, consumer_key: str | None = None
) -> ConsumerProfile:
    from ibkr_provider.hooks.connection import connection_values

    conn = json.loads(sandbox.consumer_profile_json())
    values = connection_values(
        conn["host"], conn["login"], conn.get("password"), conn["extra"], port=conn.get("port")
    )
    return ConsumerProfile(
        base_url=base_url or conn["host"],
        consumer_key=consumer_key or conn["login"],
        signature_key=required_rsa_key(values, "signature_private_key", "the consumer's signature key"),
        realm=consumer_realm(values, conn["login"]),
    )


def test_the_consent_gets_a_request_token_and_an_unreachable_ibkr_is_a_connection_error(
    fresh_oauth1_sandbox: RunningSandbox,
) -> None:
    with _quick() as http:
        token = request_token(_profile(fresh_oauth1_sandbox), "https://airflow.example/cb", http)
        assert token
        assert fresh_oauth1_sandbox.stats()["request_tokens"] == 1

        offline = _profile(fresh_oauth1_sandbox, base_url=f"http://127.0.0.1:{_closed_port()}")
        with pytest.raises(IbkrConnectionError) as excinfo:
            request_token(offline, "https://airflow.example/cb", http)
        assert excinfo.value.code is IbkrErrorCode.CONNECTION and not excinfo.value.permanent

        with pytest.raises(IbkrAuthError) as refused:
            request_token(_profile(fresh_oauth1_sandbox, consumer_key="NOTREGISTERED"), "https://x/cb", http)
        assert "consumer key" in refused.value.hint and refused.value.permanent


def test_flex_over_an_unreachable_host_is_a_connection_error(fresh_sandbox: RunningSandbox) -> None:
    base = f"http://127.0.0.1:{_closed_port()}/AccountManagement/FlexWebService"
    with (
        FlexClient(token="t" * 24, base_url=base, transport=_quick()) as flex,
        pytest.raises(IbkrConnectionError) as excinfo,
    ):
        flex.check_token()
    assert not excinfo.value.permanent and "t" * 24 not in str(excinfo.value)


def test_one_user_agent_names_the_technology_and_the_provider(fresh_sandbox: RunningSandbox) -> None:
    """IBKR asks for "Technology/Version" (Flex guide); the sandbox's Flex service refuses none."""
    assert USER_AGENT.startswith("Python/3.") and "airflow-provider-ibkr/" in USER_AGENT
    conn = json.loads(fresh_sandbox.flex_connection_json())
    with FlexClient(token=conn["password"], base_url=conn["host"]) as flex:
        assert "token accepted" in flex.check_token()
