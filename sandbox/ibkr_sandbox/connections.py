"""The files a running sandbox writes for its clients: the Airflow connections that point at it
(``airflow_conn_ibkr_default.json``, the Flex one, the Connect IBKR profiles), each 0600 since
they hold private keys, and last ``sandbox.json`` (base URL, port, pid, mode) once it listens."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ibkr_sandbox.files import (
    CA_FILE,
    OAUTH1_DH_PARAMS,
    OAUTH1_ENCRYPTION_KEY,
    OAUTH1_SIGNATURE_KEY,
    PRIVATE_KEY_FILE,
    THIRD_PARTY_CONSUMER_KEY,
    ensure_flex_token,
    ensure_oauth1_consumer,
    write_private,
)
from ibkr_sandbox.seed import SANDBOX_CLIENT_ID, SANDBOX_CREDENTIAL, SANDBOX_KEY_ID

CONN_FILE = "airflow_conn_ibkr_default.json"
FLEX_CONN_FILE = "airflow_conn_ibkr_flex_default.json"
READY_FILE = "sandbox.json"
CONSUMER_PROFILE_FILE = "airflow_conn_ibkr_consumer.json"
#: The OAuth 2.0 app profile Connect IBKR starts an authorization-code consent from.
OAUTH2_PROFILE_FILE = "airflow_conn_ibkr_oauth2_app.json"


def connection_json(state_dir: Path, base_url: str, *, mode: str) -> dict[str, Any]:
    """The Airflow connection (JSON form) that points at this sandbox (``mode``: oauth2, oauth1a
    or gateway), with the host URL's port stored as the connection's port too (Airflow 3.3's
    Test button posts the stored port, and 0 for none, which its API then refuses)."""
    conn = _connection_json(state_dir, base_url, mode=mode)
    conn["port"] = _port_of(base_url)
    return conn


def _port_of(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _connection_json(state_dir: Path, base_url: str, *, mode: str) -> dict[str, Any]:
    if mode == "oauth1a":
        consumer = ensure_oauth1_consumer(state_dir)
        return {
            "conn_type": "ibkr",
            "host": base_url,
            "login": consumer["consumer_key"],
            "password": consumer["access_token_secret"],
            "extra": {
                "auth_type": "oauth1a",
                "access_token": consumer["access_token"],
                "signature_private_key": (state_dir / OAUTH1_SIGNATURE_KEY).read_text(),
                "encryption_private_key": (state_dir / OAUTH1_ENCRYPTION_KEY).read_text(),
                "dh_params": (state_dir / OAUTH1_DH_PARAMS).read_text(),
                "account_id": "DU1234567",
            },
        }
    if mode == "gateway":
        extra: dict[str, Any] = {
            "auth_type": "gateway",
            "account_id": "DU1234567",
            "verify": str(state_dir / CA_FILE),
        }
        login = None
    else:
        extra = {
            "auth_type": "oauth2",
            "client_key_id": SANDBOX_KEY_ID,
            "credential": SANDBOX_CREDENTIAL,
            "private_key": (state_dir / PRIVATE_KEY_FILE).read_text(),
            "account_id": "DU1234567",
            "ip": "127.0.0.1",
        }
        login = SANDBOX_CLIENT_ID
    return {"conn_type": "ibkr", "host": base_url, "login": login, "extra": extra}


def consumer_profile_json(state_dir: Path, base_url: str) -> dict[str, Any]:
    """The consumer profile a Connect IBKR flow starts from: an ``oauth1a`` connection with the
    third-party consumer's key, keys and DH parameters, the authorize page, and no user token."""
    return {
        "conn_type": "ibkr",
        "host": base_url,
        "port": _port_of(base_url),
        "login": THIRD_PARTY_CONSUMER_KEY,
        "extra": {
            "auth_type": "oauth1a",
            "signature_private_key": (state_dir / OAUTH1_SIGNATURE_KEY).read_text(),
            "encryption_private_key": (state_dir / OAUTH1_ENCRYPTION_KEY).read_text(),
            "dh_params": (state_dir / OAUTH1_DH_PARAMS).read_text(),
            "authorize_url": f"{base_url}/authorize",
            "account_id": "DU1234567",
        },
    }


def oauth2_profile_json(state_dir: Path, base_url: str) -> dict[str, Any]:
    """The OAuth 2.0 app profile Connect IBKR starts from: the demo client's id, key id and
    private key, the sandbox as issuer (RFC 8414 discovery), and no user token."""
    return {
        "conn_type": "ibkr",
        "host": base_url,
        "port": _port_of(base_url),
        "login": SANDBOX_CLIENT_ID,
        "extra": {
            "auth_type": "oauth2",
            "client_key_id": SANDBOX_KEY_ID,
            "private_key": (state_dir / PRIVATE_KEY_FILE).read_text(),
            "ip": "127.0.0.1",
            "issuer": base_url,
            "account_id": "DU1234567",
        },
    }


def write_ready_files(state_dir: Path, *, base_url: str, port: int, mode: str) -> None:
    """Write the connection JSON (0600: it holds the private key) and, last, ``sandbox.json``."""
    gateway = mode == "gateway"
    conn = connection_json(state_dir, base_url, mode=mode)
    write_private(state_dir / CONN_FILE, json.dumps(conn, indent=2).encode())
    flex = {
        "conn_type": "ibkr_flex",
        "host": f"{base_url}/AccountManagement/FlexWebService",
        "port": _port_of(base_url),
        "password": ensure_flex_token(state_dir),
        "extra": {"verify": str(state_dir / CA_FILE)} if gateway else {},
    }
    write_private(state_dir / FLEX_CONN_FILE, json.dumps(flex, indent=2).encode())
    if not gateway:
        profile = consumer_profile_json(state_dir, base_url)
        write_private(state_dir / CONSUMER_PROFILE_FILE, json.dumps(profile, indent=2).encode())
        app = oauth2_profile_json(state_dir, base_url)
        write_private(state_dir / OAUTH2_PROFILE_FILE, json.dumps(app, indent=2).encode())
    ready = {
        "base_url": base_url,
        "port": port,
        "pid": os.getpid(),
        "mode": mode,
        "connection_file": str(state_dir / CONN_FILE),
    }
    tmp = state_dir / f".{READY_FILE}.tmp"
    tmp.write_text(json.dumps(ready, indent=2))
    tmp.replace(state_dir / READY_FILE)
