"""The sandbox verifies IBKR OAuth 2.0 JWTs the way IBKR does, over real HTTP."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ibkr_sandbox.process import RunningSandbox
from ibkr_sandbox.seed import SANDBOX_KEY_ID

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _private_key(sandbox: RunningSandbox) -> str:
    return (sandbox.state_dir / "client_private_key.pem").read_text()


def _other_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _assertion(key: str, *, kid: str = SANDBOX_KEY_ID, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": "sandbox-client",
        "sub": "sandbox-client",
        "aud": "/token",
        "iat": now - 10,
        "exp": now + 50,
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})


def _token_request(sandbox: RunningSandbox, assertion: str, **form: str) -> requests.Response:
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion,
        "scope": "sso-sessions.write",
        **form,
    }
    return requests.post(f"{sandbox.base_url}/oauth2/api/v1/token", data=data, timeout=10)


def test_valid_assertion_gets_an_access_token(fresh_sandbox: RunningSandbox) -> None:
    response = _token_request(fresh_sandbox, _assertion(_private_key(fresh_sandbox)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0 and body["access_token"]
    assert fresh_sandbox.stats()["tokens_issued"] == 1


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong_key", "signature verification failed"),
        ("wrong_kid", "unknown key id"),
        ("wrong_aud", "audience must be '/token'"),
        ("expired", "expired"),
        ("over_long", "exceeds the maximum"),
        ("unknown_client", "unknown client_id"),
        ("sub_mismatch", "'sub' must equal 'iss'"),
        ("missing_iat", "required claim 'iat'"),
    ],
)
def test_bad_assertions_are_rejected_with_401(
    fresh_sandbox: RunningSandbox, case: str, expected: str
) -> None:
    key = _private_key(fresh_sandbox)
    now = int(time.time())
    assertion = {
        "wrong_key": lambda: _assertion(_other_key()),
        "wrong_kid": lambda: _assertion(key, kid="other"),
        "wrong_aud": lambda: _assertion(key, aud="https://api.ibkr.com/oauth2/api/v1/token"),
        "expired": lambda: _assertion(key, iat=now - 400, exp=now - 300),
        "over_long": lambda: _assertion(key, exp=now + 3600),
        "unknown_client": lambda: _assertion(key, iss="someone-else", sub="someone-else"),
        "sub_mismatch": lambda: _assertion(key, sub="another-subject"),
        "missing_iat": lambda: _assertion(key, iat=None),
    }[case]()
    response = _token_request(fresh_sandbox, assertion)
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"] == "invalid_client"
    assert expected in body["error_description"]
    stats = fresh_sandbox.stats()
    assert stats["tokens_issued"] == 0 and stats["http_401"] == 1


def test_form_errors_are_400(fresh_sandbox: RunningSandbox) -> None:
    good = _assertion(_private_key(fresh_sandbox))
    cases = [
        (_token_request(fresh_sandbox, good, grant_type="password"), "unsupported_grant_type"),
        (_token_request(fresh_sandbox, good, scope="other"), "invalid_scope"),
        (_token_request(fresh_sandbox, "not-a-jwt"), "invalid_request"),
    ]
    for response, error in cases:
        assert (response.status_code, response.json()["error"]) == (400, error)


def _access_token(sandbox: RunningSandbox) -> str:
    response = _token_request(sandbox, _assertion(_private_key(sandbox)))
    response.raise_for_status()
    return str(response.json()["access_token"])


def _sso_jwt(key: str, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "credential": "sandboxuser",
        "ip": "127.0.0.1",
        "iss": "sandbox-client",
        "iat": now,
        "exp": now + 86400,
    }
    body.update(claims)
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": SANDBOX_KEY_ID, "typ": "JWT"})


def test_sso_session_requires_access_token_and_signed_jwt(fresh_sandbox: RunningSandbox) -> None:
    url = f"{fresh_sandbox.base_url}/gw/api/v1/sso-sessions"
    key = _private_key(fresh_sandbox)
    headers = {"Content-Type": "application/jwt"}
    no_token = requests.post(url, data=_sso_jwt(key), headers=headers, timeout=10)
    assert no_token.status_code == 401 and no_token.json()["error"] == "invalid_token"

    headers["Authorization"] = f"Bearer {_access_token(fresh_sandbox)}"
    forged = requests.post(url, data=_sso_jwt(_other_key()), headers=headers, timeout=10)
    assert forged.status_code == 401 and "signature" in forged.json()["error_description"]
    stranger = requests.post(url, data=_sso_jwt(key, credential="nobody"), headers=headers, timeout=10)
    assert stranger.status_code == 403

    ok = requests.post(url, data=_sso_jwt(key), headers=headers, timeout=10)
    assert ok.status_code == 200 and ok.json()["active"] is True
    bearer = ok.json()["access_token"]
    validate = requests.get(
        f"{fresh_sandbox.base_url}/v1/api/sso/validate",
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=10,
    )
    assert validate.json()["RESULT"] is True and validate.json()["USER_NAME"] == "sandboxuser"


def test_api_rejects_bad_bearer_and_iserver_needs_brokerage_session(fresh_sandbox: RunningSandbox) -> None:
    api = f"{fresh_sandbox.base_url}/v1/api"
    bad = requests.get(f"{api}/portfolio/accounts", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert bad.status_code == 401 and bad.json() == {"error": "not authenticated", "statusCode": 401}

    key = _private_key(fresh_sandbox)
    sso = requests.post(
        f"{fresh_sandbox.base_url}/gw/api/v1/sso-sessions",
        data=_sso_jwt(key),
        headers={
            "Content-Type": "application/jwt",
            "Authorization": f"Bearer {_access_token(fresh_sandbox)}",
        },
        timeout=10,
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {sso}"}
    no_bridge = requests.get(f"{api}/iserver/accounts", headers=auth, timeout=10)
    assert no_bridge.status_code == 400 and no_bridge.json()["error"] == "Bad Request: no bridge"
    # The read-only tier is enough for /portfolio.
    assert requests.get(f"{api}/portfolio/accounts", headers=auth, timeout=10).status_code == 200
    init = requests.post(
        f"{api}/iserver/auth/ssodh/init", json={"publish": True, "compete": True}, headers=auth, timeout=10
    )
    assert init.json()["authenticated"] is True
    assert requests.get(f"{api}/iserver/accounts", headers=auth, timeout=10).status_code == 200
    assert fresh_sandbox.stats()["ssodh_inits"] == 1
