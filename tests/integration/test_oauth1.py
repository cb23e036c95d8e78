"""Self-service OAuth 1.0a against the sandbox in oauth1a mode, over real HTTP: the hook's Test,
named causes for each wrong credential, recovery from an expired or rejected token, masking."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrClient, IbkrSessionError

MakeClient = Callable[..., IbkrClient]


def _other_key() -> str:
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )


def _test(monkeypatch: pytest.MonkeyPatch, sandbox: RunningSandbox, **changes: Any) -> tuple[bool, str]:
    from ibkr_provider.hooks.ibkr import IbkrHook

    conn = sandbox.connection
    for field in ("login", "password"):
        if field in changes:
            conn[field] = changes.pop(field)
    merged = {**conn["extra"], "session_cache": "memory", **changes}
    conn["extra"] = {k: v for k, v in merged.items() if v is not None}
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_O1", json.dumps(conn))
    return IbkrHook(ibkr_conn_id="ibkr_o1").test_connection()


def test_the_hook_connects_with_oauth1a(
    monkeypatch: pytest.MonkeyPatch, fresh_oauth1_sandbox: RunningSandbox
) -> None:
    ok, message = _test(monkeypatch, fresh_oauth1_sandbox)
    assert ok, message
    assert "oauth1a" in message and "DU1234567 (paper)" in message and "U3456789 (live)" in message
    stats = fresh_oauth1_sandbox.stats()
    assert stats["lst_issued"] == 1 and stats["ssodh_inits"] == 1 and stats.get("rejected_signatures", 0) == 0
    assert stats["token_requests"] == 0  # no OAuth 2.0 step


def test_a_corrupted_secret_fails_its_test_even_with_a_session_cached(
    monkeypatch: pytest.MonkeyPatch, fresh_oauth1_sandbox: RunningSandbox
) -> None:
    """A session of the good credentials is cached (same consumer key and access token, so the
    same session key); a secret with two characters swapped is still base64 of the right length,
    and RSA PKCS#1 v1.5 decryption turns it into a wrong prepend instead of an error. The record's
    fingerprint differs, so the Test mints a live session token with it, and IBKR's answer exposes it."""
    good, message = _test(monkeypatch, fresh_oauth1_sandbox)
    assert good and "accounts: DU1234567 (paper)" in message
    secret = fresh_oauth1_sandbox.connection["password"]
    i = next(i for i in range(10, len(secret) - 4) if secret[i] != secret[i + 1])
    swapped = secret[:i] + secret[i + 1] + secret[i] + secret[i + 2 :]
    ok, message = _test(monkeypatch, fresh_oauth1_sandbox, password=swapped)
    assert not ok and ("IbkrAuthError" in message or "encryption_private_key" in message), message
    assert secret not in message and swapped not in message
    good, message = _test(monkeypatch, fresh_oauth1_sandbox)  # the cached session was left working
    assert good and "proven by the shared session" in message


def test_a_connection_reads_its_keys_from_the_consumer_profile_it_names(
    monkeypatch: pytest.MonkeyPatch, fresh_oauth1_sandbox: RunningSandbox
) -> None:
    """What Connect IBKR saves (issue 30): the user's connection holds no key, only
    ``consumer_profile``; the profile's keys (under their old names here, still read) sign."""
    from ibkr_provider.client import IbkrConfigError
    from ibkr_provider.hooks.ibkr import IbkrHook

    conn = fresh_oauth1_sandbox.connection
    keys = ("signature_private_key", "encryption_private_key", "dh_params")
    profile = {"conn_type": "ibkr", "host": conn["host"], "login": conn["login"], "extra": {}}
    profile["extra"] = {"auth_type": "oauth1a", "signature_key": conn["extra"]["signature_private_key"]}
    profile["extra"].update({k: conn["extra"][k] for k in keys[1:]})
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_PROFILE", json.dumps(profile))
    user = {k: v for k, v in conn["extra"].items() if k not in keys}
    assert not any("BEGIN" in str(v) for v in user.values())
    ok, message = _test(
        monkeypatch, fresh_oauth1_sandbox, **{k: None for k in keys}, consumer_profile="ibkr_profile"
    )
    assert ok and "DU1234567 (paper)" in message, message

    monkeypatch.setenv("AIRFLOW_CONN_IBKR_PROFILE", json.dumps({**profile, "extra": {"auth_type": "oauth2"}}))
    with pytest.raises(IbkrConfigError, match="consumer_profile: 'ibkr_profile' is not a consumer profile"):
        IbkrHook(ibkr_conn_id="ibkr_o1").get_client_config()


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        (
            "signature_private_key",
            "signature_private_key and the encryption_private_key whose public halves you uploaded",
        ),
        # OpenSSL's implicit rejection (Marvin) usually turns a wrong key's decryption into a synthetic
        # value that only the live-session-token request exposes; sometimes decryption fails outright
        (
            "encryption_private_key",
            "encryption key decrypts the secret into part of what is signed|"
            "encryption_private_key: cannot decrypt",
        ),
        ("dh_params", "DH parameters are not the dhparam.pem you uploaded"),
        ("login", "consumer key (activated?"),
        ("password", "copied incompletely"),
    ],
)
def test_each_wrong_credential_is_named(
    change: str, cause: str, monkeypatch: pytest.MonkeyPatch, fresh_oauth1_sandbox: RunningSandbox
) -> None:
    conn = fresh_oauth1_sandbox.connection
    wrong: dict[str, Callable[[], str]] = {  # made on demand: an RSA key takes a while
        "signature_private_key": _other_key,
        "encryption_private_key": _other_key,
        # a valid PKCS#3 file with another 2048-bit prime (RFC 7919 ffdhe2048), generator 2
        "dh_params": lambda: FFDHE2048_PEM,
        "login": lambda: "WRONGCONS",
        "password": lambda: conn["password"][:-8],
    }
    ok, message = _test(monkeypatch, fresh_oauth1_sandbox, **{change: wrong[change]()})
    assert not ok and any(alternative in message for alternative in cause.split("|")), message
    assert "BEGIN" not in message and conn["password"] not in message


def test_an_expired_token_is_replaced_once(
    fresh_oauth1_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_oauth1_sandbox)
    assert client.request("GET", "/iserver/accounts")["accounts"]
    fresh_oauth1_sandbox.expire_live_session_tokens()
    assert client.request("GET", "/iserver/accounts")["accounts"]  # 410, a new LST, the request again
    stats = fresh_oauth1_sandbox.stats()
    assert stats["lst_issued"] == 2 and stats["http_410"] >= 1 and stats.get("rejected_signatures", 0) == 0


def test_a_410_recovers_once(fresh_oauth1_sandbox: RunningSandbox, make_client: MakeClient) -> None:
    client = make_client(fresh_oauth1_sandbox)
    client.connect()
    fresh_oauth1_sandbox.inject_fault("/v1/api/portfolio/accounts", "410")
    assert [a.account_id for a in client.list_accounts()] == ["DU1234567", "DU2345678", "U3456789"]
    stats = fresh_oauth1_sandbox.stats()
    assert stats["faults_fired"] == 1 and stats["http_410"] == 1


def test_consecutive_401s_give_two_attempts_then_the_error(
    fresh_oauth1_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_oauth1_sandbox)
    client.connect()
    fresh_oauth1_sandbox.inject_fault("/v1/api/portfolio/DU1234567/ledger", "401", count=5)
    with pytest.raises(IbkrSessionError):
        client.account_ledger("DU1234567")
    assert fresh_oauth1_sandbox.stats()["paths"]["GET /v1/api/portfolio/DU1234567/ledger"] == 2


def test_renewal_ahead_of_the_token_expiry(
    fresh_oauth1_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    fresh_oauth1_sandbox.configure(lst_lifetime=4.0)
    client = make_client(fresh_oauth1_sandbox, session_refresh_lead=2)
    import time

    for _ in range(12):
        assert client.request("GET", "/iserver/accounts")["accounts"]
        time.sleep(0.5)
    stats = fresh_oauth1_sandbox.stats()
    assert 2 <= stats["lst_issued"] <= 5 and stats["http_401"] == 0 and stats.get("http_410", 0) == 0


def test_every_oauth1a_secret_goes_to_the_masker(
    monkeypatch: pytest.MonkeyPatch, fresh_oauth1_sandbox: RunningSandbox
) -> None:
    from ibkr_provider.hooks.ibkr import IbkrHook

    conn = fresh_oauth1_sandbox.connection
    monkeypatch.setenv(
        "AIRFLOW_CONN_IBKR_O1", json.dumps({**conn, "extra": {**conn["extra"], "session_cache": "memory"}})
    )
    registered: list[str] = []
    with (
        mock.patch("ibkr_provider.hooks.ibkr.mask_secret", side_effect=registered.append),
        IbkrHook(ibkr_conn_id="ibkr_o1") as hook,
    ):
        client = hook.get_conn()
        client.connect()
        client.tickle()
        record = client.sessions.current
    assert record is not None and record.bearer in registered  # the live session token
    consumer = json.loads((fresh_oauth1_sandbox.state_dir / "oauth1_consumer.json").read_text())
    assert consumer["prepend"] in registered and conn["password"] in registered
    assert conn["extra"]["access_token"] in registered
    for field in ("signature_private_key", "encryption_private_key"):
        lines = [line for line in conn["extra"][field].splitlines() if "-----" not in line]
        assert all(line in registered for line in lines), field
    # the RSA signature of the LST request, exactly as the sandbox received it
    sent = fresh_oauth1_sandbox.lst_signatures()
    assert len(sent) == 1 and sent[0] in registered


FFDHE2048_PEM = """-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""
