"""Verification of IBKR OAuth 2.0 JWTs as the sandbox's token and SSO-session endpoints do it.

Every rejection has its own error description so a test (or a user debugging their key) can
tell a wrong key from a wrong kid, audience, expiry or lifetime.
"""

from __future__ import annotations

import time
from typing import Any

import jwt

TOKEN_AUDIENCE = "/token"


class JwtRejected(Exception):
    """The JWT failed a check; ``error`` is the OAuth error code, the message the description."""

    def __init__(self, description: str, error: str = "invalid_client") -> None:
        super().__init__(description)
        self.error = error
        self.description = description

    @property
    def status(self) -> int:
        """400 for a malformed request, 401 for a credential that fails verification."""
        return 400 if self.error == "invalid_request" else 401


def _header_and_issuer(token: str) -> tuple[dict[str, Any], str]:
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise JwtRejected("client_assertion is not a compact JWS", "invalid_request") from None
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise JwtRejected("JWT has no 'iss' claim")
    return header, issuer


def _public_key(client_keys: dict[str, dict[str, str]], client_id: str, kid: Any) -> str:
    keys = client_keys.get(client_id)
    if keys is None:
        raise JwtRejected(f"unknown client_id '{client_id}'")
    if not isinstance(kid, str) or kid not in keys:
        raise JwtRejected(f"unknown key id (kid) '{kid}' for client '{client_id}'")
    return keys[kid]


def _decode(
    token: str, key: str, *, audience: str | list[str] | None, issuer: str, leeway: float, required: list[str]
) -> dict[str, Any]:
    try:
        decoded: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": required, "verify_aud": audience is not None},
        )
        return decoded
    except jwt.InvalidSignatureError:
        raise JwtRejected(
            "JWT signature verification failed: not signed by the key registered for this kid"
        ) from None
    except jwt.ExpiredSignatureError:
        raise JwtRejected("JWT has expired (exp is in the past)") from None
    except jwt.ImmatureSignatureError:
        raise JwtRejected("JWT is not valid yet (iat/nbf in the future)") from None
    except jwt.InvalidAudienceError:
        expected = "' or '".join(audience) if isinstance(audience, list) else audience
        raise JwtRejected(f"JWT audience must be '{expected}'") from None
    except jwt.InvalidIssuerError:
        raise JwtRejected("JWT issuer does not match the client") from None
    except jwt.MissingRequiredClaimError as exc:
        raise JwtRejected(f"JWT lacks the required claim '{exc.claim}'") from None
    except jwt.InvalidAlgorithmError:
        raise JwtRejected("JWT must be signed with RS256") from None
    except jwt.PyJWTError as exc:
        raise JwtRejected(f"JWT rejected: {type(exc).__name__}") from None


def verify_client_assertion(
    assertion: str,
    client_keys: dict[str, dict[str, str]],
    *,
    leeway: float,
    max_lifetime: float,
    audiences: tuple[str, ...] = (TOKEN_AUDIENCE,),
) -> dict[str, Any]:
    """Check a ``private_key_jwt`` client assertion and return its claims (``iss`` is the client
    id it authenticates); ``aud`` must be one of ``audiences``."""
    header, client_id = _header_and_issuer(assertion)
    key = _public_key(client_keys, client_id, header.get("kid"))
    claims = _decode(
        assertion,
        key,
        audience=list(audiences),
        issuer=client_id,
        leeway=leeway,
        required=["iss", "sub", "aud", "exp", "iat"],
    )
    if claims.get("sub") != client_id:
        raise JwtRejected("JWT 'sub' must equal 'iss' (the client id)")
    lifetime = float(claims["exp"]) - float(claims["iat"])
    if lifetime > max_lifetime:
        raise JwtRejected(
            f"client assertion lifetime {lifetime:.0f} s exceeds the maximum {max_lifetime:.0f} s"
        )
    if float(claims["iat"]) > time.time() + leeway:
        raise JwtRejected("JWT is not valid yet (iat in the future)")
    return claims


def verify_sso_jwt(
    token: str,
    client_keys: dict[str, dict[str, str]],
    *,
    client_id: str,
    leeway: float,
    user: str | None = None,
) -> dict[str, Any]:
    """Check the SSO-session JWT (signed by the same client) and return its claims. With a
    user's own access token (``user``), ``credential`` may be left out and must name that user
    when present."""
    header, issuer = _header_and_issuer(token)
    if issuer != client_id:
        raise JwtRejected("SSO JWT 'iss' must be the client id the access token was issued to")
    key = _public_key(client_keys, client_id, header.get("kid"))
    claims = _decode(token, key, audience=None, issuer=client_id, leeway=leeway, required=["iss", "exp"])
    if user is not None:
        if claims.get("credential") not in (None, user):
            raise JwtRejected(
                "SSO JWT 'credential' is not the user the access token acts for", "access_denied"
            )
        claims["credential"] = user
    for claim in ("credential", "ip"):
        if not isinstance(claims.get(claim), str) or not claims[claim]:
            raise JwtRejected(f"SSO JWT lacks the required claim '{claim}'", "invalid_request")
    return claims
