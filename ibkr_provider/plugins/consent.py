"""The "Connect IBKR" flow's state and its connections, apart from the web pages.

A consent starts from a consumer profile: an ``ibkr`` connection of ``auth_type`` ``oauth1a``
that holds a third-party app's registration with IBKR (consumer key in ``login``, signature and
encryption keys, DH parameters, ``authorize_url``, optional ``callback_url``) and no user token.
The flow ends with the user's own ``ibkr`` connection: the profile's settings, a reference to the
profile for its keys (extra ``consumer_profile``), the access token (extra) and its secret
(password), saved through Airflow's ORM, so Airflow encrypts them.

State: a random 256-bit value per consent, bound to the Airflow user who started it, kept
server-side for 10 minutes in the profile's session cache (file on one host, Redis across hosts,
encrypted with Airflow's Fernet key) under its SHA-256, and taken exactly once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

#: How long a started consent may take (IBKR's request token lives about as long).
STATE_LIFETIME_SECONDS = 600.0


@dataclass(frozen=True)
class PendingConsent:
    """What the callback needs to finish a consent (kept server-side, never in a URL)."""

    user_id: str
    profile_conn_id: str
    target_conn_id: str
    #: OAuth 1.0a: the request token the user approves ("" for OAuth 2.0).
    request_token: str
    expires_at: float
    #: ``oauth1a`` (three-legged) or ``oauth2`` (authorization code with PKCE).
    protocol: str = "oauth1a"
    #: OAuth 2.0: the PKCE verifier, the exact redirect URI and the endpoints the consent used.
    code_verifier: str = ""
    redirect_uri: str = ""
    token_url: str = ""
    revocation_url: str = ""


class ConsentRefused(Exception):
    """The callback cannot finish: the text is what the page shows (no secrets in it)."""


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two texts as UTF-8 bytes (``compare_digest`` raises on a str
    with non-ASCII characters, which turned a crafted CSRF token or state into a 500)."""
    return secrets.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def new_state() -> str:
    return secrets.token_urlsafe(32)


def state_key(state: str) -> str:
    """Where a state's record is kept: its SHA-256 (the state itself is never stored)."""
    return "connect-" + hashlib.sha256(state.encode()).hexdigest()


def seal(pending: PendingConsent) -> bytes:
    return json.dumps(asdict(pending)).encode()


def unseal(data: bytes | None, user_id: str, request_token: str) -> PendingConsent:
    """The pending consent a callback names, checked: it exists (not taken yet), has not
    expired, belongs to the user finishing it and is for the request token IBKR sent back."""
    if data is None:
        raise ConsentRefused(
            "This link is no longer valid: it was used already, it expired, or it was not started here. "
            "Start again with Connect IBKR."
        )
    pending = PendingConsent(**json.loads(data))
    if pending.expires_at < time.time():
        raise ConsentRefused("This consent took longer than 10 minutes. Start again with Connect IBKR.")
    if not same_secret(pending.user_id, user_id):
        raise ConsentRefused(
            "This consent was started by another Airflow user. Start your own with Connect IBKR."
        )
    if not same_secret(pending.request_token, request_token):
        raise ConsentRefused("IBKR answered for another request. Start again with Connect IBKR.")
    return pending


def user_connection_fields(
    profile_conn_id: str, profile_extra: dict[str, Any], grant: dict[str, Any]
) -> dict[str, Any]:
    """The user's connection extra: the consumer profile's settings (cache, transport, account)
    without its key material or its authorization-server settings, a reference to the profile
    (``consumer_profile``: the hook reads the keys from there), and this user's ``grant`` (the
    OAuth 1.0a access token, or the OAuth 2.0 refresh token and token endpoint). Keys are never
    copied into users' connections: rotating them is one edit, and no user's connection exposes
    them."""
    from ibkr_provider.client.fields import RENAMED_FIELDS
    from ibkr_provider.hooks.connection import PROFILE_FIELDS

    profile_only = {"authorize_url", "callback_url", "issuer", "scope", "credential", "revocation_url"}
    grants = {"access_token", "refresh_token", "token_url"}
    dropped = {*profile_only, *grants, *PROFILE_FIELDS, *RENAMED_FIELDS}
    extra = {k: v for k, v in profile_extra.items() if k not in dropped}
    extra["consumer_profile"] = profile_conn_id
    extra.update(grant)
    return extra
