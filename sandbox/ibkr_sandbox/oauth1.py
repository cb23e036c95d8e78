"""The sandbox's self-service OAuth 1.0a, checked the way IBKR's guide describes it.

This module verifies signatures with its own base-string builder and computes the live session
token with Python's ``pow`` and the standard library's ``hmac``: nothing here is shared with the
provider's client, so a client that builds a base string wrongly fails against it.

Consumers (one is generated per state directory, see ``files.ensure_oauth1_consumer``) have a
consumer key, an access token, the prepend (the secret the access token secret encrypts), the
public half of the signature key and a DH prime (generator 2). Only the newest live session
token of an access token is honoured: a request signed with an older one answers 410 Gone, as
IBKR does for a token that is no longer valid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ibkr_sandbox.loopwatch import Arrival

#: RFC 3526 group 14: a fixed 2048-bit safe prime (generating one takes minutes). Generator 2.
RFC3526_PRIME_2048 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
GENERATOR = 2
#: How long a request's timestamp is remembered with the time it was read (longer than any
#: stall :mod:`ibkr_sandbox.loopwatch` forgives); older ones only count as the newest seen.
STAMP_MEMORY_SECONDS = 2.0
_HEADER_PAIR = re.compile(r'([A-Za-z_]+)="([^"]*)"')


class OAuth1Rejected(Exception):
    """A request fails the OAuth 1.0a checks; ``status`` and ``body`` are IBKR-style."""

    def __init__(self, status: int, error: str, *, bad_signature: bool = False) -> None:
        super().__init__(error)
        self.status = status
        self.body = {"error": error, "statusCode": status}
        self.bad_signature = bad_signature


@dataclass
class StampHistory:
    """The timestamps of a consumer's accepted requests, each with the time the sandbox read
    it, so a request is compared only with requests that surely arrived before it: the handlers
    run in worker threads in any order, and after a stall the loop reads several requests at
    once in no particular order (:mod:`ibkr_sandbox.loopwatch`)."""

    recent: deque[tuple[float, int]] = field(default_factory=deque)
    #: the newest timestamp of the requests no longer in ``recent``
    settled: int = 0

    def newest_before(self, moment: float) -> int:
        """The newest timestamp of the requests read before ``moment``."""
        return max([self.settled, *(stamp for read, stamp in self.recent if read < moment)])

    def add(self, read: float, stamp: int) -> None:
        self.recent.append((read, stamp))
        while self.recent and self.recent[0][0] < read - STAMP_MEMORY_SECONDS:
            self.settled = max(self.settled, self.recent.popleft()[1])


@dataclass
class Consumer:
    consumer_key: str
    access_token: str
    prepend: bytes
    signature_public_pem: str
    dh_prime: int
    credential: str
    #: live session tokens this access token was given, newest last (only the newest is valid)
    tokens: list[str] = field(default_factory=list)
    expired: set[str] = field(default_factory=set)
    nonces: set[str] = field(default_factory=set)
    stamps: StampHistory = field(default_factory=StampHistory)


def quote(text: str) -> str:
    """RFC 3986: unreserved characters and ``~`` stay, everything else is %XX."""
    return urllib.parse.quote(text, safe="~")


def parse_authorization(header: str) -> tuple[str, dict[str, str]]:
    """``OAuth realm="x", k="v", ...`` -> (realm, {k: v}); values stay percent-encoded as sent."""
    if not header.startswith("OAuth "):
        raise OAuth1Rejected(401, "not authenticated")
    pairs = dict(_HEADER_PAIR.findall(header[len("OAuth ") :]))
    realm = pairs.pop("realm", "")
    return realm, pairs


def signature_base(method: str, url: str, params: dict[str, str], prepend: str = "") -> str:
    """The OAuth base string as IBKR's guide writes it (sorted raw ``k=v`` pairs, encoded once)."""
    joined = "&".join(f"{name}={params[name]}" for name in sorted(params))
    return prepend + method.upper() + "&" + quote(url) + "&" + quote(joined)


def verify_rsa_sha256(
    public_pem: str, params: dict[str, str], base_of: Callable[[dict[str, str]], str]
) -> None:
    """Check an RSA-SHA256 request (live session token, request and access token): pops
    ``oauth_signature`` from ``params`` and verifies it over ``base_of(params)``."""
    signature = urllib.parse.unquote(params.pop("oauth_signature", ""))
    if params.get("oauth_signature_method") != "RSA-SHA256":
        raise OAuth1Rejected(401, "oauth_signature_method must be RSA-SHA256", bad_signature=True)
    public = serialization.load_pem_public_key(public_pem.encode())
    if not isinstance(public, rsa.RSAPublicKey):
        raise OAuth1Rejected(500, "consumer key misconfigured")
    try:
        base = base_of(params).encode()
        public.verify(base64.b64decode(signature), base, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        raise OAuth1Rejected(401, "invalid signature", bad_signature=True) from None


def timestamp_of(params: dict[str, str], clock_skew: float) -> int:
    """``oauth_timestamp`` in seconds, within ``clock_skew`` of now."""
    try:
        stamp = int(params.get("oauth_timestamp", ""))
    except ValueError:
        raise OAuth1Rejected(401, "invalid timestamp") from None
    if abs(stamp - time.time()) > clock_skew:
        raise OAuth1Rejected(401, "timestamp out of range (milliseconds instead of seconds?)")
    return stamp


def java_bytes(value: int) -> bytes:
    return value.to_bytes(value.bit_length() // 8 + 1, "big")


class OAuth1Verifier:
    """Checks OAuth 1.0a requests for the sandbox's consumers."""

    #: How far a timestamp may be from the sandbox's clock (seconds).
    clock_skew = 300.0

    def __init__(self, consumers: dict[str, Consumer], settings: Any, *, realm: str = "limited_poa") -> None:
        """``settings`` (the sandbox's) supplies ``lst_lifetime``, ``oauth1_timestamp_tolerance``
        and ``oauth1_query_signing``, read at each request so the control plane can change them."""
        self.consumers = consumers
        #: access tokens granted by three-legged consents (see ``consent.py``), by access token
        self.grants: dict[str, Consumer] = {}
        self.settings = settings
        self.realm = realm
        #: ``oauth_signature`` of each live-session-token request, as it arrived (percent-encoded):
        #: what a test scans logs for, taken from the wire rather than guessed.
        self.received_signatures: list[str] = []

    def _all(self) -> list[Consumer]:
        return [*self.consumers.values(), *self.grants.values()]

    def reset(self) -> None:
        """Forget every live session token, nonce and timestamp (the sandbox's reset)."""
        self.grants.clear()
        for consumer in self.consumers.values():
            consumer.tokens.clear()
            consumer.expired.clear()
            consumer.nonces.clear()
            consumer.stamps = StampHistory()
        self.received_signatures.clear()

    def expire_tokens(self) -> list[str]:
        """Make every current live session token invalid (answers 410); returns them."""
        current = [c.tokens[-1] for c in self._all() if c.tokens]
        for consumer in self._all():
            consumer.expired.update(consumer.tokens)
        return current

    def consumer_of(self, header: str) -> Consumer | None:
        """The consumer an Authorization header names (for pacing per username), unchecked."""
        token = re.search(r'oauth_token="([^"]*)"', header)
        if token and token.group(1) in self.grants:
            return self.grants[token.group(1)]
        match = re.search(r'oauth_consumer_key="([^"]*)"', header)
        return self.consumers.get(match.group(1)) if match else None

    def _consumer(self, realm: str, params: dict[str, str]) -> Consumer:
        key = params.get("oauth_consumer_key", "")
        consumer = self.grants.get(params.get("oauth_token", "")) or self.consumers.get(key)
        if consumer is None or consumer.consumer_key != key or realm != self.realm:
            raise OAuth1Rejected(401, "id: 1, error: invalid consumer")
        if params.get("oauth_token") != consumer.access_token:
            raise OAuth1Rejected(401, "invalid token")
        return consumer

    def _fresh(self, consumer: Consumer, params: dict[str, str], arrival: Arrival | None) -> None:
        """IBKR: timestamps in seconds, never earlier than a previous request's; nonces unique.
        "Previous" is by arrival, as the sandbox's middleware noted it (:mod:`ibkr_sandbox.loopwatch`;
        read now when not given). Arrival order across processes can lag a little:
        ``timestamp_tolerance`` seconds are allowed (how much IBKR allows is UNCONFIRMED)."""
        earliest, read = arrival or Arrival.now()
        stamp = timestamp_of(params, self.clock_skew)
        newest = consumer.stamps.newest_before(earliest)
        if stamp < newest - float(self.settings.oauth1_timestamp_tolerance):
            raise OAuth1Rejected(401, "timestamp is older than a previous request's")
        nonce = params.get("oauth_nonce", "")
        if not nonce or nonce in consumer.nonces:
            raise OAuth1Rejected(401, "nonce already used")
        consumer.nonces.add(nonce)
        consumer.stamps.add(read, stamp)

    def live_session_token(
        self, method: str, url: str, header: str, arrival: Arrival | None = None
    ) -> tuple[Consumer, str, dict[str, Any]]:
        """``POST /oauth/live_session_token``: verify the RSA-SHA256 request, run the DH step and
        return (consumer, the new LST, IBKR's answer)."""
        realm, params = parse_authorization(header)
        self.received_signatures = [*self.received_signatures[-49:], params.get("oauth_signature", "")]
        consumer = self._consumer(realm, params)
        prepend = consumer.prepend.hex()
        verify_rsa_sha256(
            consumer.signature_public_pem, params, lambda p: signature_base(method, url, p, prepend=prepend)
        )
        self._fresh(consumer, params, arrival)
        try:
            challenge = int(params["diffie_hellman_challenge"], 16)
        except (KeyError, ValueError):
            raise OAuth1Rejected(400, "diffie_hellman_challenge missing or not hex") from None
        b = secrets.randbits(256) | 1
        shared = pow(challenge, b, consumer.dh_prime)
        lst_bytes = hmac.new(java_bytes(shared), consumer.prepend, hashlib.sha1).digest()
        lst = base64.b64encode(lst_bytes).decode()
        signature_hex = hmac.new(lst_bytes, consumer.consumer_key.encode(), hashlib.sha1).hexdigest()
        consumer.tokens.append(lst)
        answer = {
            "diffie_hellman_response": format(pow(GENERATOR, b, consumer.dh_prime), "x"),
            "live_session_token_signature": signature_hex,
            "live_session_token_expiration": int((time.time() + float(self.settings.lst_lifetime)) * 1000),
        }
        return consumer, lst, answer

    def request(
        self,
        method: str,
        url: str,
        query: dict[str, str],
        header: str,
        arrival: Arrival | None = None,
    ) -> tuple[Consumer, str]:
        """A signed API request: returns (consumer, the LST it was signed with). 410 for a token
        that is no longer the newest (or was expired), 401 for anything else that fails."""
        realm, params = parse_authorization(header)
        consumer = self._consumer(realm, params)
        signature = urllib.parse.unquote(params.pop("oauth_signature", ""))
        if params.get("oauth_signature_method") != "HMAC-SHA256":
            raise OAuth1Rejected(401, "oauth_signature_method must be HMAC-SHA256", bad_signature=True)
        signed, signed_url = dict(params), url
        rule = self.settings.oauth1_query_signing
        if rule == "guide":
            signed.update(query)
        elif rule == "url" and query:
            signed_url = url + "?" + "&".join(f"{k}={v}" for k, v in query.items())
        base = signature_base(method, signed_url, signed).encode()
        for lst in reversed(consumer.tokens):
            expected = base64.b64encode(
                hmac.new(base64.b64decode(lst), base, hashlib.sha256).digest()
            ).decode()
            if hmac.compare_digest(expected, signature):
                if lst != consumer.tokens[-1] or lst in consumer.expired:
                    raise OAuth1Rejected(410, "gone")
                self._fresh(consumer, params, arrival)
                return consumer, lst
        raise OAuth1Rejected(401, "invalid signature", bad_signature=True)
