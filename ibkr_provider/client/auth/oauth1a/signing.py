"""IBKR's self-service OAuth 1.0a: the live session token (LST) and request signing.

The steps follow IBKR's "How to implement OAuth" guide (and its OAuth 1.0a extended campus page,
https://www.interactivebrokers.com/campus/ibkr-api-page/oauth-1-0a-extended/):

1. prepend = RSA PKCS#1 v1.5 decryption of the access token secret with the private
   encryption key, as lowercase hex;
2. a Diffie-Hellman challenge A = 2^a mod p with the prime the user uploaded (``dhparam.pem``);
3. ``POST /v1/api/oauth/live_session_token`` signed with RSA-SHA256 (signature key) over
   prepend + the OAuth base string; IBKR answers B, the LST's signature and its expiry;
4. K = B^a mod p, as Java's ``BigInteger.toByteArray()`` writes it (a leading zero byte when the
   top bit is set); LST = base64(HMAC-SHA1(K, prepend bytes));
5. the LST is valid when hex(HMAC-SHA1(LST, consumer key)) equals IBKR's signature;
6. every later request is signed with HMAC-SHA256 keyed by the LST.

RSA and HMAC come from ``cryptography``. The Diffie-Hellman step is two modular
exponentiations with Python's ``pow`` (``cryptography`` deprecates finite-field DH, and IBKR's
step needs nothing else); the byte layout IBKR expects is written here. Every value the flow
creates (prepend, LST, signatures) is a secret.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import padding

from ibkr_provider.client.errors import IbkrAuthError, IbkrErrorCode
from ibkr_provider.client.settings.oauth1a import DH_GENERATOR, OAuth1aSettings, QuerySigning

LST_PATH = "/oauth/live_session_token"
#: Bits of the private DH exponent a (IBKR's guide: 256 random bits).
DH_EXPONENT_BITS = 256

LST_MISMATCH_CAUSES = (
    "the live session token IBKR computed differs from ours: the encryption key is not the one whose "
    "public half you uploaded, the DH parameters are not the dhparam.pem you uploaded, or the access "
    "token secret belongs to another access token"
)


def pct(text: str) -> str:
    """RFC 3986 percent-encoding: only unreserved characters (and ``~``) stay as they are."""
    return quote(text, safe="~")


def base_string(method: str, url: str, params: Mapping[str, str], prepend: str = "") -> str:
    """prepend + METHOD & pct(url) & pct(sorted ``k=v`` pairs joined with ``&``)."""
    pairs = "&".join(f"{key}={params[key]}" for key in sorted(params))
    return f"{prepend}{method.upper()}&{pct(url)}&{pct(pairs)}"


def authorization_header(realm: str, params: Mapping[str, str]) -> str:
    """``OAuth realm="...", k="v", ...`` (values double-quoted, sorted by key)."""
    fields = ", ".join(f'{key}="{params[key]}"' for key in sorted(params))
    return f'OAuth realm="{realm}", {fields}'


def java_bytes(value: int) -> bytes:
    """``BigInteger.toByteArray()`` of a positive integer: big-endian two's complement, so a
    leading zero byte whenever the top bit of the first byte would be set."""
    return value.to_bytes(value.bit_length() // 8 + 1, "big")


def _hmac(key: bytes, message: bytes, algorithm: hashes.HashAlgorithm) -> bytes:
    mac = hmac.HMAC(key, algorithm)
    mac.update(message)
    return mac.finalize()


@dataclass(frozen=True)
class LiveSessionToken:
    """The LST (base64) and when it expires (epoch seconds)."""

    token: str = field(repr=False)
    expires_at: float


class LiveSessionTokenExchange:
    """One Diffie-Hellman exchange for a live session token (steps 2-5)."""

    def __init__(self, credentials: OAuth1aSettings, *, exponent: int | None = None) -> None:
        self._credentials = credentials
        self._exponent = exponent if exponent is not None else secrets.randbits(DH_EXPONENT_BITS) | 1
        self.challenge = format(pow(DH_GENERATOR, self._exponent, credentials.dh_prime), "x")

    def request_params(self, *, timestamp: int, nonce: str) -> dict[str, str]:
        """The signed parameters of ``POST /oauth/live_session_token`` (step 3), without the
        signature."""
        return {
            "diffie_hellman_challenge": self.challenge,
            "oauth_consumer_key": self._credentials.consumer_key,
            "oauth_nonce": nonce,
            "oauth_signature_method": "RSA-SHA256",
            "oauth_timestamp": str(timestamp),
            "oauth_token": self._credentials.access_token,
        }

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        """RSA-SHA256 over prepend + the base string; base64, percent-encoded for the header."""
        message = base_string("POST", url, params, prepend=self._credentials.prepend).encode()
        signature = self._credentials.signature_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return pct(base64.b64encode(signature).decode())

    def live_session_token(self, dh_response_hex: str, lst_signature_hex: str) -> str:
        """Steps 4-5: K from IBKR's B, the LST, and its validation against IBKR's signature."""
        prime = self._credentials.dh_prime
        try:
            b = int(dh_response_hex.strip(), 16)
        except ValueError:
            b = 0
        if not 1 < b < prime - 1:
            raise IbkrAuthError(
                "IBKR's Diffie-Hellman response is not a valid public value for your DH prime; check that "
                "dh_params is the dhparam.pem you uploaded",
                endpoint=f"/v1/api{LST_PATH}",
                code=IbkrErrorCode.AUTH,
                hint="the connection's dh_params / dh_prime",
            )
        shared = pow(b, self._exponent, prime)
        lst = base64.b64encode(
            _hmac(java_bytes(shared), bytes.fromhex(self._credentials.prepend), hashes.SHA1())  # noqa: S303 - IBKR's algorithm
        ).decode()
        expected = _hmac(base64.b64decode(lst), self._credentials.consumer_key.encode(), hashes.SHA1()).hex()  # noqa: S303
        if not secrets.compare_digest(expected, lst_signature_hex.strip().lower()):
            raise IbkrAuthError(
                LST_MISMATCH_CAUSES,
                endpoint=f"/v1/api{LST_PATH}",
                code=IbkrErrorCode.AUTH,
                hint="the connection's encryption_private_key, dh_params and password (access token secret)",
            )
        return lst


def request_signature(lst: str, method: str, url: str, params: Mapping[str, str]) -> str:
    """Step 6: HMAC-SHA256 keyed by the LST over the base string (no prepend)."""
    mac = _hmac(base64.b64decode(lst), base_string(method, url, params).encode(), hashes.SHA256())
    return pct(base64.b64encode(mac).decode())


def signed_request_header(
    credentials: OAuth1aSettings,
    lst: str,
    *,
    method: str,
    url: str,
    query: Mapping[str, str],
    timestamp: int,
    nonce: str,
) -> str:
    """The ``Authorization`` header of an API request on the LST.

    ``url`` has no query string; ``query`` holds the query parameters, which enter the signature
    as ``credentials.query_signing`` says. JSON bodies are not signed.
    """
    oauth = {
        "oauth_consumer_key": credentials.consumer_key,
        "oauth_nonce": nonce,
        "oauth_signature_method": "HMAC-SHA256",
        "oauth_timestamp": str(timestamp),
        "oauth_token": credentials.access_token,
    }
    signed = dict(oauth)
    signed_url = url
    if credentials.query_signing is QuerySigning.GUIDE:
        signed.update(query)
    elif credentials.query_signing is QuerySigning.URL and query:
        signed_url = f"{url}?" + "&".join(f"{key}={value}" for key, value in query.items())
    oauth["oauth_signature"] = request_signature(lst, method, signed_url, signed)
    return authorization_header(credentials.realm, oauth)


def new_nonce() -> str:
    """A random, unique nonce (never reused)."""
    return secrets.token_hex(16)
