"""IbkrHook: lazy connection lookup, test_connection, and secret registration with the masker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ibkr_sandbox.process import RunningSandbox

from scripts.local_airflow import ROOT as REPO_ROOT
from scripts.local_airflow import airflow_env


@pytest.fixture
def conn_env(monkeypatch: pytest.MonkeyPatch, fresh_sandbox: RunningSandbox):  # type: ignore[no-untyped-def]
    def set_conn(conn_id: str = "ibkr_default", **extra: object) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", fresh_sandbox.connection_json(**extra))

    return set_conn


def test_constructor_never_looks_up_the_connection() -> None:
    from ibkr_provider.hooks.ibkr import IbkrHook

    with mock.patch("airflow.sdk.BaseHook.get_connection", side_effect=AssertionError("looked up")) as lookup:
        hook = IbkrHook(ibkr_conn_id="does_not_exist")
        assert hook.ibkr_conn_id == "does_not_exist"
        assert IbkrHook().ibkr_conn_id == "ibkr_default"
    lookup.assert_not_called()


def test_test_connection_succeeds_against_the_sandbox(conn_env, fresh_sandbox: RunningSandbox) -> None:  # type: ignore[no-untyped-def]
    from ibkr_provider.hooks.ibkr import IbkrHook

    conn_env()
    ok, message = IbkrHook().test_connection()
    assert ok, message
    assert "DU1234567" in message and "oauth2" in message
    assert fresh_sandbox.stats()["tokens_issued"] == 1


def test_test_connection_reports_a_wrong_key(conn_env) -> None:  # type: ignore[no-untyped-def]
    from ibkr_provider.hooks.ibkr import IbkrHook

    wrong = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    conn_env(private_key=wrong)
    ok, message = IbkrHook().test_connection()
    assert not ok
    assert message.startswith("IbkrAuthError") and "signature verification failed" in message
    assert "BEGIN" not in message


def test_test_connection_reports_a_missing_field_without_raising(conn_env) -> None:  # type: ignore[no-untyped-def]
    from ibkr_provider.hooks.ibkr import IbkrHook

    conn_env(ip=None)
    ok, message = IbkrHook().test_connection()
    assert not ok and "ip:" in message


def test_test_connection_reports_a_missing_connection() -> None:
    from ibkr_provider.hooks.ibkr import IbkrHook

    ok, message = IbkrHook(ibkr_conn_id="no_such_conn").test_connection()
    assert not ok and "no_such_conn" in message


def test_prefixed_extra_names_are_accepted(
    monkeypatch: pytest.MonkeyPatch, fresh_sandbox: RunningSandbox
) -> None:
    from ibkr_provider.hooks.ibkr import IbkrHook

    conn = fresh_sandbox.connection
    conn["extra"] = {f"extra__ibkr__{k}": v for k, v in conn["extra"].items()}
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_PREFIXED", json.dumps(conn))
    assert IbkrHook(ibkr_conn_id="ibkr_prefixed").test_connection()[0]


def test_every_runtime_secret_is_registered_with_the_masker(conn_env) -> None:  # type: ignore[no-untyped-def]
    from airflow.sdk._shared.secrets_masker import redact

    import ibkr_provider.hooks.ibkr as hook_module
    from ibkr_provider.hooks.ibkr import IbkrHook

    conn_env()
    sink: list[str] = []
    real = hook_module.mask_secret  # whatever the hook registers with, unchanged

    def recording(secret: str, name: str | None = None) -> None:
        sink.append(secret)
        real(secret, name)  # the hook's own registration, as it is, must reach the task's masker

    with mock.patch("ibkr_provider.hooks.ibkr.mask_secret", side_effect=recording) as spy:
        hook = IbkrHook()
        client = hook.get_conn()
        client.connect()
        tickle = client.tickle()
        hook.close()
    assert spy.call_count >= 5
    pem: str = client.config.auth.private_key_pem  # type: ignore[attr-defined]
    record = client.sessions.current
    assert record is not None and record.bearer and record.access_token and tickle.session
    assert pem in sink
    jwts = [s for s in sink if s.count(".") == 2]
    assert len(jwts) >= 2  # the two signed JWTs (client assertion, SSO JWT)
    # What the hook registered, and nothing this test registered, hides every runtime secret.
    line = (
        f"Authorization: Bearer {record.bearer} token={record.access_token} session={tickle.session} "
        f"assertion={jwts[0]} sso={jwts[1]} key line={pem.splitlines()[1]}"
    )
    shown = redact(line)
    for secret in (record.bearer, record.access_token, tickle.session, *jwts[:2]):
        assert secret not in shown, shown
    assert pem.splitlines()[1] not in shown
    # the key inside a repr (or re-serialized JSON): its line breaks escaped, only its lines match
    in_a_repr = redact(f"extra={ {'private_key': pem} }")
    body = [line for line in pem.splitlines() if not line.startswith("-----")]
    leaked = sum(line in in_a_repr for line in body)
    assert leaked == 0, f"{leaked} of the key's {len(body)} lines shown in a repr"


def _test_in_fresh_home(tmp_path: Path, sandbox: RunningSandbox, **env_extra: str) -> tuple[bool, str]:
    """``IbkrHook().test_connection()`` in a new process whose AIRFLOW_HOME has no airflow.cfg."""
    home = tmp_path / "fresh-home"
    home.mkdir()
    env = airflow_env(
        home, REPO_ROOT / "dags", AIRFLOW_CONN_IBKR_DEFAULT=sandbox.connection_json(), **env_extra
    )
    code = (
        "import json, logging; logging.basicConfig(); from ibkr_provider.hooks.ibkr import IbkrHook; "
        "print(json.dumps(IbkrHook().test_connection()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (home / "airflow.cfg").exists() or "FERNET" not in env_extra
    ok, message = json.loads(result.stdout.strip().splitlines()[-1])
    return ok, message + result.stdout + result.stderr


def test_a_fresh_home_without_a_fernet_key_works_and_warns(
    tmp_path: Path, fresh_sandbox: RunningSandbox
) -> None:
    """Airflow returns the placeholder '{FERNET_KEY}' when no airflow.cfg exists yet: that is "no key"."""
    ok, output = _test_in_fresh_home(tmp_path, fresh_sandbox)
    assert ok, output
    assert "fernet_key is not set" in output and "unencrypted" in output


def test_a_malformed_fernet_key_names_the_option(tmp_path: Path, fresh_sandbox: RunningSandbox) -> None:
    ok, message = _test_in_fresh_home(tmp_path, fresh_sandbox, AIRFLOW__CORE__FERNET_KEY="not-a-key")
    assert not ok and "IbkrConfigError: [core] fernet_key: is not a valid Fernet key" in message
    assert fresh_sandbox.stats()["requests_total"] == 0


def test_a_connection_of_the_oauth2_type_needs_no_auth_type_and_refuses_another(
    monkeypatch: pytest.MonkeyPatch, fresh_sandbox: RunningSandbox
) -> None:
    """Connection type ``ibkr_oauth2`` (the form of one auth type) is OAuth 2.0 without the
    ``auth_type`` extra; one naming another auth type fails naming the field, before any request."""
    from ibkr_provider.hooks.ibkr import IbkrOAuth2Hook

    conn = json.loads(fresh_sandbox.connection_json(auth_type=None))
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_TYPED", json.dumps({**conn, "conn_type": "ibkr_oauth2"}))
    ok, message = IbkrOAuth2Hook(ibkr_conn_id="ibkr_typed").test_connection()
    assert ok and "(oauth2)" in message and "DU1234567" in message, message
    requests_before = sum(fresh_sandbox.stats()["paths"].values())
    conflicting = {**conn, "conn_type": "ibkr_oauth2", "extra": {**conn["extra"], "auth_type": "gateway"}}
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_TYPED", json.dumps(conflicting))
    ok, message = IbkrOAuth2Hook(ibkr_conn_id="ibkr_typed").test_connection()
    assert not ok and "auth_type" in message and "ibkr_oauth2 connection is oauth2" in message, message
    assert sum(fresh_sandbox.stats()["paths"].values()) == requests_before


def test_a_connection_in_hand_is_tested_without_an_environment_variable(
    fresh_sandbox: RunningSandbox,
) -> None:
    """Connect IBKR tests a connection it just saved from the object itself: nothing is put in
    the process's environment, nothing is looked up by id."""
    import os

    from airflow.models.connection import Connection

    from ibkr_provider.hooks.ibkr import IbkrHook

    conn = Connection.from_json(fresh_sandbox.connection_json(), conn_id="ibkr_in_hand")
    environment = dict(os.environ)
    with mock.patch("airflow.sdk.BaseHook.get_connection", side_effect=AssertionError("looked up")):
        ok, message = IbkrHook.of_connection(conn, session_owner="ibkr_in_hand").test_connection()
    assert ok and "DU1234567" in message, message
    assert dict(os.environ) == environment
