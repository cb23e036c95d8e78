"""The connection fields of ``ibkr`` and ``ibkr_flex``: the one list every reader derives from.

Airflow 3.3 builds the connection form only from ``conn-fields`` in ``get_provider_info()``; the
hook reads exactly these extras (:data:`ibkr_provider.hooks.connection.EXTRA_FIELDS` is derived from
:func:`ibkr_conn_fields`), and a test checks the README's table names each one. Each field has a
label, a description and a JSON schema.
"""

from __future__ import annotations

from typing import Any

from ibkr_provider.consent_fields import oauth2_consent_fields
from ibkr_provider.field_schemas import OPTIONAL_STRING, SECRET_STRING

#: Fields both connection types read the same way.
_TRANSPORT_FIELDS: dict[str, Any] = {
    "verify": {
        "label": "TLS verification",
        "description": "true (default), false, or the path of a CA bundle (e.g. the gateway's CA).",
        "schema": {"type": ["string", "null"], "default": "true"},
    },
    "timeout": {
        "label": "Timeout (seconds)",
        "description": "Per-request HTTP timeout in seconds (default 30).",
        "schema": {"type": ["number", "null"], "default": 30},
    },
}


def _oauth1a_fields() -> dict[str, Any]:
    """Self-service OAuth 1.0a: what the user generated and uploaded, and what IBKR gave back."""
    pem_note = "Paste the PEM; stripped or \\n-escaped newlines are repaired."
    return {
        "consumer_key": {
            "label": "Consumer key (oauth1a)",
            "description": "The 9-character consumer key you chose in IBKR's self-service OAuth page; "
            "the connection's login works too.",
            "schema": OPTIONAL_STRING,
        },
        "access_token": {
            "label": "Access token (oauth1a)",
            "description": "The access token IBKR's self-service OAuth page generated for the consumer.",
            "schema": SECRET_STRING,
        },
        "access_token_secret": {
            "label": "Access token secret (oauth1a)",
            "description": "As IBKR's page shows it (base64); the connection's password works too.",
            "schema": SECRET_STRING,
        },
        "signature_private_key": {
            "label": "Private signature key (oauth1a)",
            "description": "Private half of the signature key pair whose public half you uploaded "
            f"(private_signature.pem). {pem_note}",
            "schema": SECRET_STRING,
        },
        "signature_private_key_path": {
            "label": "Signature key path (oauth1a)",
            "description": "Path to private_signature.pem on every worker, instead of pasting it.",
            "schema": OPTIONAL_STRING,
        },
        "encryption_private_key": {
            "label": "Private encryption key (oauth1a)",
            "description": "Private half of the encryption key pair whose public half you uploaded "
            f"(private_encryption.pem); it decrypts the access token secret. {pem_note}",
            "schema": SECRET_STRING,
        },
        "encryption_private_key_path": {
            "label": "Encryption key path (oauth1a)",
            "description": "Path to private_encryption.pem on every worker, instead of pasting it.",
            "schema": OPTIONAL_STRING,
        },
        "dh_params": {
            "label": "DH parameters (oauth1a)",
            "description": "The dhparam.pem you uploaded (-----BEGIN DH PARAMETERS-----).",
            "schema": OPTIONAL_STRING,
        },
        "dh_params_path": {
            "label": "DH parameters path (oauth1a)",
            "description": "Path to dhparam.pem on every worker, instead of pasting it.",
            "schema": OPTIONAL_STRING,
        },
        "dh_prime": {
            "label": "DH prime, hex (oauth1a)",
            "description": "The prime of dhparam.pem as hex (as ibind users keep it), instead of dh_params.",
            "schema": OPTIONAL_STRING,
        },
        "realm": {
            "label": "Realm (oauth1a)",
            "description": "limited_poa (default); test_realm for IBKR's demo consumer TESTCONS.",
            "schema": OPTIONAL_STRING,
        },
        "consumer_profile": {
            "label": "Consumer profile (oauth1a, Connect IBKR)",
            "description": "Connection id of the consumer profile whose keys, DH parameters and realm "
            "this connection uses (Connect IBKR sets it; nothing is copied).",
            "schema": OPTIONAL_STRING,
        },
        "oauth1_query_signing": {
            "label": "Query parameter signing (oauth1a)",
            "description": "guide (IBKR's guide, default), ignore or url: IBKR's sources differ "
            "(UNCONFIRMED); change it only if signed requests with query parameters get 401.",
            "schema": {
                "type": ["string", "null"],
                "enum": ["guide", "ignore", "url", None],
                "default": "guide",
            },
        },
    }


#: The connection types of one auth type each (their form shows only that auth type's fields);
#: ``ibkr`` with the ``auth_type`` extra keeps working for every auth type.
AUTH_CONN_TYPES = {"ibkr_oauth2": "oauth2", "ibkr_oauth1a": "oauth1a", "ibkr_gateway": "gateway"}
#: Every connection type the IBKR hook reads.
IBKR_CONN_TYPES = ("ibkr", *AUTH_CONN_TYPES)


def _oauth2_fields() -> dict[str, Any]:
    """OAuth 2.0 ``private_key_jwt``: what IBKR registered for the client."""
    return {
        "client_key_id": {
            "label": "Client key id (kid)",
            "description": "Key id IBKR registered for your public key; sent as the JWT 'kid' header.",
            "schema": {"type": ["string", "null"], "default": "main"},
        },
        "credential": {
            "label": "Credential (IBKR username)",
            "description": "IBKR username the SSO session is opened for (oauth2 only).",
            "schema": OPTIONAL_STRING,
        },
        "private_key": {
            "label": "Private key (PEM)",
            "description": "RSA private key whose public half is registered with IBKR. Paste the PEM; "
            "stripped or \\n-escaped newlines are repaired.",
            "schema": {"type": ["string", "null"], "format": "password"},
        },
        "private_key_path": {
            "label": "Private key path",
            "description": "Path to the PEM file on every worker, instead of pasting the key.",
            "schema": OPTIONAL_STRING,
        },
        "ip": {
            "label": "Public IP",
            "description": "Public IP address your requests leave from, placed in the SSO session JWT "
            "(oauth2 only). Never looked up from a third-party service.",
            "schema": OPTIONAL_STRING,
        },
        **oauth2_consent_fields(),
    }


_ACCOUNT_FIELD: dict[str, Any] = {
    "account_id": {
        "label": "Default account id",
        "description": "Account used when a task names none, e.g. U1234567 or DU1234567.",
        "schema": OPTIONAL_STRING,
    },
}


def _session_fields() -> dict[str, Any]:
    """How the one shared session is kept, paced and retried (every auth type)."""
    return {
        "session_cache": {
            "label": "Session cache",
            "description": "Where the one IBKR session all tasks share lives: file (default, one per host; "
            "directory from [ibkr] session_cache_dir or file:///dir), redis://host:6379/0 (several hosts, "
            "e.g. CeleryExecutor) or memory (per process).",
            "schema": {"type": ["string", "null"], "default": "file"},
        },
        "rate_limit": {
            "label": "Rate limit (requests/s)",
            "description": "Global requests per second for this username, shared by all tasks. Default: 50 "
            "for oauth2 (IBKR Web API docs), 10 for gateway.",
            "schema": {"type": ["number", "null"]},
        },
        "tickle_interval": {
            "label": "Keep-alive interval (seconds)",
            "description": "Tickle the shared session after this long without requests (IBKR: about 60 s).",
            "schema": {"type": ["number", "null"], "default": 60},
        },
        "session_refresh_lead": {
            "label": "Renew ahead (seconds)",
            "description": "Renew the session this long before its access token expires (default 60).",
            "schema": {"type": ["number", "null"], "default": 60},
        },
        "compete_on_login": {
            "label": "Take over on login",
            "description": "When opening a new session, take the brokerage session over from other logins "
            "(TWS, IBKR Mobile), as IBKR's sample does. false: fail with a competing-session error instead.",
            "schema": {"type": ["boolean", "null"], "default": True},
        },
        "displace_other_connections": {
            "label": "Displace other connections",
            "description": "Take this IBKR user's brokerage session over even from another connection of "
            "this deployment that holds it (off: fail naming that connection instead).",
            "schema": {"type": ["boolean", "null"], "default": False},
        },
        "max_retries": {
            "label": "Max retries",
            "description": "Retries of a transient failure (connection, timeout, 429, 502-504); default 4.",
            "schema": {"type": ["integer", "null"], "default": 4},
        },
        "max_retry_seconds": {
            "label": "Max retry time (seconds)",
            "description": "Total time a request may spend retrying, waits included (default 60).",
            "schema": {"type": ["number", "null"], "default": 60},
        },
    }


def auth_conn_fields(auth_type: str) -> dict[str, Any]:
    """The fields of the connection type of one auth type (``ibkr_oauth2``, ...), the
    ``(oauth1a)`` and ``(oauth2 only)`` marks of the shared form dropped: only they are shown."""
    own = {"oauth2": _oauth2_fields(), "oauth1a": _oauth1a_fields(), "gateway": {}}[auth_type]
    fields = {**own, **_ACCOUNT_FIELD, **_TRANSPORT_FIELDS, **_session_fields()}
    if auth_type == "gateway":  # the gateway's own login holds the session: nothing to renew
        fields.pop("session_refresh_lead")
    if auth_type == "oauth1a":  # the form's login and password are relabelled to hold these
        fields.pop("consumer_key")
        fields.pop("access_token_secret")
    return {
        name: {
            **field,
            "label": field["label"]
            .replace(" (oauth1a)", "")
            .replace(" (oauth1a, Connect IBKR)", " (Connect IBKR)"),
            "description": field["description"].replace(" (oauth2 only)", ""),
        }
        for name, field in fields.items()
    }


def ibkr_conn_fields() -> dict[str, Any]:
    """The ``ibkr`` connection's extras: every auth type's, chosen by ``auth_type``."""
    return {
        "auth_type": {
            "label": "Auth type",
            "description": "oauth2: IBKR OAuth 2.0 private_key_jwt (advisor and institutional accounts; "
            "default). oauth1a: IBKR's self-service OAuth 1.0a (individual accounts: consumer key, access "
            "token and secret from IBKR's self-service OAuth page). gateway: a Client Portal Gateway you "
            "run and log in to yourself. The connection types Interactive Brokers (OAuth 2.0), (OAuth "
            "1.0a) and (Client Portal Gateway) show only their own fields.",
            "schema": {
                "type": ["string", "null"],
                "enum": ["oauth2", "oauth1a", "gateway", None],
                "default": "oauth2",
            },
        },
        **_oauth2_fields(),
        **_ACCOUNT_FIELD,
        **_oauth1a_fields(),
        **_TRANSPORT_FIELDS,
        **_session_fields(),
    }


def flex_conn_fields() -> dict[str, Any]:
    """The ``ibkr_flex`` connection's extras (the token is the password)."""
    return {
        "query_id": {
            "label": "Default Flex query id",
            "description": "Query id from Client Portal (Performance & Reports > Flex Queries): "
            "used by operators that name none, and by the Test button, which then proves token "
            "and query with one SendRequest.",
            "schema": OPTIONAL_STRING,
        },
        **_TRANSPORT_FIELDS,
        "poll_interval": {
            "label": "Poll interval (seconds)",
            "description": "Wait between GetStatement polls while IBKR answers 1019 (default 5).",
            "schema": {"type": ["number", "null"], "default": 5},
        },
        "max_wait": {
            "label": "Max wait (seconds)",
            "description": "Give up on a report not ready after this long (default 600).",
            "schema": {"type": ["number", "null"], "default": 600},
        },
    }
