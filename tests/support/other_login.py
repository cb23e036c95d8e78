"""Simulate another login for the sandbox user (think TWS or IBKR Mobile): a raw HTTP login
that opens its own SSO session and takes the brokerage session over with ``compete: true``."""

from __future__ import annotations

import time

import jwt
import requests
from ibkr_sandbox.process import RunningSandbox
from ibkr_sandbox.seed import SANDBOX_KEY_ID


def login_elsewhere(sandbox: RunningSandbox) -> str:
    """Returns the other login's bearer."""
    key = (sandbox.state_dir / "client_private_key.pem").read_text()
    now = int(time.time())
    headers = {"kid": SANDBOX_KEY_ID, "typ": "JWT"}
    assertion = jwt.encode(
        {"iss": "sandbox-client", "sub": "sandbox-client", "aud": "/token", "iat": now - 5, "exp": now + 30},
        key,
        algorithm="RS256",
        headers=headers,
    )
    token = requests.post(
        f"{sandbox.base_url}/oauth2/api/v1/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "scope": "sso-sessions.write",
        },
        timeout=10,
    ).json()["access_token"]
    sso_jwt = jwt.encode(
        {
            "credential": "sandboxuser",
            "ip": "127.0.0.1",
            "iss": "sandbox-client",
            "iat": now,
            "exp": now + 600,
        },
        key,
        algorithm="RS256",
        headers=headers,
    )
    bearer: str = requests.post(
        f"{sandbox.base_url}/gw/api/v1/sso-sessions",
        data=sso_jwt,
        headers={"Content-Type": "application/jwt", "Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()["access_token"]
    status = requests.post(
        f"{sandbox.base_url}/v1/api/iserver/auth/ssodh/init",
        json={"publish": True, "compete": True},
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=10,
    ).json()
    assert status["authenticated"] is True
    return bearer
