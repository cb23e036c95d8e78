"""IBKR's three-legged OAuth 1.0a: how a registered third-party consumer gets a user's token.

The consent flow IBKR documents for third-party apps (its "How to implement OAuth" guide; the
only public consent flow: IBKR's OAuth 2.0 takes client credentials only):

1. ``POST /v1/api/oauth/request_token``, RSA-SHA256 with the consumer's signature key over the
   plain base string (no prepend), signed parameters ``oauth_callback``, ``oauth_consumer_key``,
   ``oauth_nonce``, ``oauth_signature_method``, ``oauth_timestamp``; IBKR answers
   ``{"oauth_token": <request token>}``;
2. the browser goes to IBKR's authorize page with ``oauth_token=<request token>``; the user logs
   in and consents; IBKR redirects to the consumer's registered callback with ``oauth_token`` and
   ``oauth_verifier``;
3. ``POST /v1/api/oauth/access_token``, RSA-SHA256, signed parameters add ``oauth_token`` (the
   request token) and ``oauth_verifier``; IBKR answers the user's ``oauth_token`` (access token),
   ``oauth_token_secret`` (base64 of an RSA-encrypted value, as the self-service portal shows it)
   and ``is_paper``.

From then on the user's connection is a normal ``oauth1a`` connection (live session token, shared
session). The request token, verifier, access token and secret are secrets: callers register them
with their masker.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from ibkr_provider.client.auth.oauth1a.signing import authorization_header, base_string, new_nonce, pct
from ibkr_provider.client.errors import IbkrAuthError, IbkrErrorCode
from ibkr_provider.client.http.transport import HttpTransport

REQUEST_TOKEN_PATH = "/v1/api/oauth/request_token"
ACCESS_TOKEN_PATH = "/v1/api/oauth/access_token"
#: IBKR's authorize page (its guide); a consumer profile may name another one.
DEFAULT_AUTHORIZE_URL = "https://www.interactivebrokers.com/authorize"


@dataclass(frozen=True)
class ConsumerProfile:
    """A third-party app's registration with IBKR (what a consumer-profile connection holds)."""

    base_url: str
    consumer_key: str
    signature_key: RSAPrivateKey = field(repr=False)
    realm: str
    authorize_url: str = DEFAULT_AUTHORIZE_URL
    verify: bool | str = True
    timeout: float = 30.0


@dataclass(frozen=True)
class AccessGrant:
    """What IBKR gives for one user's consent."""

    access_token: str = field(repr=False)
    access_token_secret: str = field(repr=False)
    is_paper: bool


#: What a refused consent call means (IBKR answered 400/401/403).
CONSUMER_HINT = "the consumer profile's consumer key (registered and activated by IBKR?) and signature_key"


def _signed_post(
    profile: ConsumerProfile, path: str, extra: Mapping[str, str], http: HttpTransport, *, idempotent: bool
) -> dict[str, Any]:
    """A consent call, signed afresh for every attempt (a new nonce and timestamp: IBKR refuses
    a replayed nonce). Through the provider's transport: an unreachable IBKR is a connection
    error (retried), a refusal an auth error naming the consumer's fields."""
    url = profile.base_url.rstrip("/") + path

    def sign() -> dict[str, str]:
        params = {
            "oauth_consumer_key": profile.consumer_key,
            "oauth_nonce": new_nonce(),
            "oauth_signature_method": "RSA-SHA256",
            "oauth_timestamp": str(int(time.time())),
            **extra,
        }
        signature = profile.signature_key.sign(
            base_string("POST", url, params).encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        signed = {**params, "oauth_signature": pct(base64.b64encode(signature).decode())}
        return {"Authorization": authorization_header(profile.realm, signed)}

    body = http.send("POST", url, prepare=sign, auth_hint=CONSUMER_HINT, idempotent=idempotent)
    if not isinstance(body, dict):
        raise IbkrAuthError(
            f"IBKR's {path} answer is not a JSON object", endpoint=path, code=IbkrErrorCode.AUTH
        )
    return body


def request_token(profile: ConsumerProfile, callback: str, http: HttpTransport) -> str:
    """Step 1: a request token for one consent (asking again is harmless)."""
    body = _signed_post(profile, REQUEST_TOKEN_PATH, {"oauth_callback": callback}, http, idempotent=True)
    token = body.get("oauth_token")
    if not isinstance(token, str) or not token:
        raise IbkrAuthError(
            "IBKR's request_token answer has no oauth_token",
            endpoint=REQUEST_TOKEN_PATH,
            code=IbkrErrorCode.AUTH,
        )
    return token


def authorize_url(profile: ConsumerProfile, token: str) -> str:
    """Step 2: where the user's browser goes to log in and consent."""
    separator = "&" if "?" in profile.authorize_url else "?"
    return f"{profile.authorize_url}{separator}{urlencode({'oauth_token': token})}"


def access_token(profile: ConsumerProfile, token: str, verifier: str, http: HttpTransport) -> AccessGrant:
    """Step 3: the user's access token and secret, for the request token the user approved (a
    verifier is good once: not repeated after an ambiguous failure)."""
    extra = {"oauth_token": token, "oauth_verifier": verifier}
    body = _signed_post(profile, ACCESS_TOKEN_PATH, extra, http, idempotent=False)
    access, secret = body.get("oauth_token"), body.get("oauth_token_secret")
    if not isinstance(access, str) or not isinstance(secret, str) or not access or not secret:
        raise IbkrAuthError(
            "IBKR's access_token answer lacks oauth_token or oauth_token_secret",
            endpoint=ACCESS_TOKEN_PATH,
            code=IbkrErrorCode.AUTH,
        )
    return AccessGrant(access_token=access, access_token_secret=secret, is_paper=bool(body.get("is_paper")))
