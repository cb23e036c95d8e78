"""The two signed JWTs of IBKR's OAuth 2.0 flow, made with PyJWT (RS256).

IBKR supports only ``private_key_jwt`` client authentication (RFC 7521/7523). Both JWTs carry
the header ``{"alg": "RS256", "typ": "JWT", "kid": <client key id>}``; the key id selects which
of the client's registered public keys IBKR verifies the signature with.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from ibkr_provider.client.keys import load_rsa_private_key

#: IBKR's audience for the client assertion is this literal relative string, not a URL.
TOKEN_AUDIENCE = "/token"
#: The client assertion is single-use and short-lived; IBKR's own sample signs it for 20-30 s.
ASSERTION_LIFETIME_SECONDS = 60
#: ``iat`` is backdated so a server clock slightly behind ours does not see a future token.
CLOCK_SKEW_SECONDS = 10
#: IBKR's sample signs the SSO-session JWT for 24 hours.
SSO_JWT_LIFETIME_SECONDS = 86_400


class AppKey(Protocol):
    """What signs for an app: OAuth 2.0 settings, a user's grant, an app profile."""

    @property
    def client_id(self) -> str: ...

    @property
    def client_key_id(self) -> str: ...

    @property
    def private_key_pem(self) -> str: ...


def load_private_key(pem: str) -> RSAPrivateKey:
    """The connection's ``private_key`` (the client key registered with IBKR)."""
    return load_rsa_private_key(pem, "private_key")


class AssertionSigner:
    """Signs IBKR's client assertion and SSO-session JWT with one RSA key."""

    def __init__(
        self, *, client_id: str, key_id: str, private_key_pem: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._client_id = client_id
        self._key_id = key_id
        self._key = load_private_key(private_key_pem)
        self._clock = clock

    @classmethod
    def of_app(cls, app: AppKey, clock: Callable[[], float] = time.time) -> AssertionSigner:
        """The signer of an app's settings (its client id, key id and private key)."""
        return cls(
            client_id=app.client_id,
            key_id=app.client_key_id,
            private_key_pem=app.private_key_pem,
            clock=clock,
        )

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._key_id, "typ": "JWT"})

    def client_assertion(self, audience: str = TOKEN_AUDIENCE) -> str:
        """The ``client_assertion`` for IBKR's token endpoint: iss = sub = client id, ``aud``
        (IBKR's ``/token`` for client credentials; the token endpoint's URL by RFC 7523 for the
        authorization-code grants), iat slightly in the past, short expiry, and a random ``jti``
        (RFC 7523 3: the server may refuse a replayed assertion)."""
        now = int(self._clock())
        return self._sign(
            {
                "iss": self._client_id,
                "sub": self._client_id,
                "aud": audience,
                "iat": now - CLOCK_SKEW_SECONDS,
                "exp": now + ASSERTION_LIFETIME_SECONDS,
                "jti": secrets.token_urlsafe(16),
            }
        )

    def sso_session_jwt(self, *, credential: str | None, ip: str) -> str:
        """The body of ``POST /gw/api/v1/sso-sessions``: the username the session is for and the
        public IP it is bound to. A user's own access token (Connect IBKR, OAuth 2.0) names its
        user itself: ``credential`` is then left out when the username is unknown."""
        now = int(self._clock())
        claims: dict[str, Any] = {
            "ip": ip,
            "iss": self._client_id,
            "iat": now,
            "exp": now + SSO_JWT_LIFETIME_SECONDS,
        }
        if credential:
            claims["credential"] = credential
        return self._sign(claims)
