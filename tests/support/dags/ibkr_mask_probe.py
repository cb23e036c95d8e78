"""Test-only DAG: deliberately logs and prints every IBKR secret the flow creates, so a test can
prove that the provider registered each of them with Airflow's masker (the task log must show
only ***). It records what the hook hands to the masker (both signed JWTs, the access token,
the SSO bearer, the tickle session id, the key and its lines) by wrapping the hook's
``mask_secret``, which still registers each one."""

from __future__ import annotations

import json
import logging
import os

import pendulum
from airflow.sdk import dag, task

log = logging.getLogger(__name__)


def _received_signatures(client: object) -> list[str]:
    """What the sandbox got on the wire as ``oauth_signature`` of this probe's live-session-token
    request (the newest it received)."""
    import requests

    base_url = client.config.base_url  # type: ignore[attr-defined]
    answer = requests.get(f"{base_url}/__sandbox__/oauth1/signatures", timeout=30)
    answer.raise_for_status()
    received: list[str] = answer.json()
    return received[-1:]


@dag(
    dag_id="ibkr_mask_probe", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False
)
def ibkr_mask_probe() -> None:
    @task
    def leak_everything() -> None:
        import ibkr_provider.hooks.ibkr as hook_module

        registered: list[str] = []
        original = hook_module.mask_secret

        def recording(secret: str) -> None:
            registered.append(secret)
            original(secret)

        hook_module.mask_secret = recording  # type: ignore[assignment]
        with hook_module.IbkrHook() as hook:
            client = hook.get_conn()
            client.connect()
            tickle = client.tickle()
            record = client.sessions.current
            assert record is not None and record.bearer and tickle.session
            oauth1a = client.config.auth if client.config.auth_type.value == "oauth1a" else None
            secrets = {
                "bearer": record.bearer,  # the SSO bearer (oauth2) or the live session token (oauth1a)
                "access_token": record.access_token or (oauth1a.access_token if oauth1a else ""),
                "tickle_session": tickle.session,
                "signed_jwts": [s for s in registered if s.count(".") == 2],
                "prepend": oauth1a.prepend if oauth1a else "",
                # the RSA-SHA256 signature of the live-session-token request, as the sandbox received it
                # (the probe's own session: its connection has a memory cache, so it minted one)
                "lst_request_signatures": _received_signatures(client) if oauth1a else [],
                "key_lines": (getattr(client.config.auth, "private_key_pem", "") or "").splitlines(),
            }
            with open(os.environ["IBKR_MASK_PROBE_OUT"], "w") as handle:
                json.dump(secrets, handle)
            for n, value in enumerate(secrets["lst_request_signatures"]):
                log.info("leak via logging: lst_signature %d=%s", n, value)
            log.info("leak via logging: prepend=%s", secrets["prepend"])
            for name in ("bearer", "access_token", "tickle_session"):
                log.info("leak via logging: %s=%s", name, secrets[name])
                print(f"leak via print: {name}={secrets[name]}")
            for n, jwt in enumerate(secrets["signed_jwts"]):
                log.info("leak via logging: jwt %d=%s", n, jwt)
            for n, line in enumerate(secrets["key_lines"]):
                log.info("leak via logging: key_line %d=%s", n, line)
            log.info("leak of the whole key: %s", getattr(client.config.auth, "private_key_pem", ""))

    leak_everything()


ibkr_mask_probe()
