"""The sandbox's three-legged OAuth 1.0a: a registered third-party consumer asks a user's consent.

IBKR's guide: ``POST /oauth/request_token`` (RSA-SHA256 by the consumer's signature key, no
prepend, ``oauth_callback`` signed), the user logs in and consents on IBKR's authorize page, IBKR
redirects to the callback with ``oauth_token`` and ``oauth_verifier``, and ``POST
/oauth/access_token`` (RSA-SHA256, ``oauth_token`` = request token, ``oauth_verifier``) answers the
user's access token, its secret (the prepend encrypted to the consumer's encryption key, base64)
and ``is_paper``. The new access token then works like a self-service one (live session token).

Sandbox choices (IBKR's behaviour is UNCONFIRMED where noted): the consumer is registered with the
callback its request_token call names (IBKR fixes it at registration); a denied consent redirects
with ``denied=1`` and no verifier; a request token lives 10 minutes and is used once.
"""

from __future__ import annotations

import base64
import html
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ibkr_sandbox.oauth1 import (
    Consumer,
    OAuth1Rejected,
    OAuth1Verifier,
    parse_authorization,
    signature_base,
    timestamp_of,
    verify_rsa_sha256,
)

#: How long a request token may wait for the user's consent and the exchange (seconds).
REQUEST_TOKEN_LIFETIME = 600.0


@dataclass(frozen=True)
class ThirdPartyConsumer:
    """A consumer IBKR registered for a third-party app."""

    consumer_key: str
    signature_public_pem: str
    encryption_public_pem: str
    dh_prime: int


@dataclass
class PendingConsent:
    consumer_key: str
    callback: str
    created: float
    credential: str | None = None
    verifier: str | None = None
    denied: bool = False
    used: bool = False


@dataclass
class ConsentBroker:
    """Request tokens, the authorize decision and the access-token exchange."""

    verifier: OAuth1Verifier
    consumers: dict[str, ThirdPartyConsumer]
    #: username -> password of the users who may log in on the authorize page
    users: dict[str, str]
    pending: dict[str, PendingConsent] = field(default_factory=dict)
    nonces: set[str] = field(default_factory=set)

    def _verify(self, method: str, url: str, header: str) -> tuple[ThirdPartyConsumer, dict[str, str]]:
        realm, params = parse_authorization(header)
        consumer = self.consumers.get(params.get("oauth_consumer_key", ""))
        if consumer is None or realm != self.verifier.realm:
            raise OAuth1Rejected(401, "id: 1, error: invalid consumer")
        verify_rsa_sha256(consumer.signature_public_pem, params, lambda p: signature_base(method, url, p))
        timestamp_of(params, self.verifier.clock_skew)
        nonce = params.get("oauth_nonce", "")
        if not nonce or nonce in self.nonces:
            raise OAuth1Rejected(401, "nonce already used")
        self.nonces.add(nonce)
        return consumer, params

    def request_token(self, method: str, url: str, header: str) -> str:
        consumer, params = self._verify(method, url, header)
        callback = urllib.parse.unquote(params.get("oauth_callback", ""))
        if not callback:
            raise OAuth1Rejected(400, "oauth_callback missing")
        token = secrets.token_hex(12)
        self.pending[token] = PendingConsent(consumer.consumer_key, callback, time.time())
        return token

    def _live(self, token: str) -> PendingConsent | None:
        consent = self.pending.get(token)
        if consent is None or consent.used or time.time() - consent.created > REQUEST_TOKEN_LIFETIME:
            return None
        return consent

    def is_pending(self, token: str) -> bool:
        consent = self._live(token)
        return consent is not None and consent.verifier is None and not consent.denied

    def decide(self, token: str, username: str, password: str, accept: bool) -> str:
        """The authorize page's form: the redirect URL (to the consumer's callback), or raise
        ``ValueError`` with the text the page shows."""
        consent = self._live(token)
        if consent is None or consent.verifier is not None or consent.denied:
            raise ValueError(
                "This authorization request is unknown or has expired. Start again from the app."
            )
        query: dict[str, str] = {"oauth_token": token}
        if not accept:
            consent.denied = True
            query["denied"] = "1"
        else:
            if self.users.get(username) != password:
                raise ValueError("Invalid username or password.")
            consent.credential = username
            consent.verifier = secrets.token_hex(10)
            query["oauth_verifier"] = consent.verifier
        separator = "&" if "?" in consent.callback else "?"
        return consent.callback + separator + urllib.parse.urlencode(query)

    def access_token(self, method: str, url: str, header: str) -> dict[str, object]:
        consumer, params = self._verify(method, url, header)
        token = params.get("oauth_token", "")
        consent = self._live(token)
        if consent is None or consent.consumer_key != consumer.consumer_key:
            raise OAuth1Rejected(401, "invalid request token")
        verifier = urllib.parse.unquote(params.get("oauth_verifier", ""))
        if (
            consent.verifier is None
            or consent.credential is None
            or not secrets.compare_digest(consent.verifier, verifier)
        ):
            raise OAuth1Rejected(401, "invalid verifier")
        consent.used = True
        prepend = secrets.token_bytes(32)
        public = serialization.load_pem_public_key(consumer.encryption_public_pem.encode())
        if not isinstance(public, rsa.RSAPublicKey):
            raise OAuth1Rejected(500, "consumer key misconfigured")
        access = secrets.token_hex(10)
        self.verifier.grants[access] = Consumer(
            consumer_key=consumer.consumer_key,
            access_token=access,
            prepend=prepend,
            signature_public_pem=consumer.signature_public_pem,
            dh_prime=consumer.dh_prime,
            credential=consent.credential,
        )
        secret = base64.b64encode(public.encrypt(prepend, padding.PKCS1v15())).decode()
        return {"is_paper": False, "oauth_token": access, "oauth_token_secret": secret}


def consent_page(token: str | None, message: str | None, *, field: str = "oauth_token") -> str:
    """IBKR's authorize step as the sandbox shows it: log in, then Allow or Deny. ``field``
    names the pending request (the OAuth 1.0a request token, the OAuth 2.0 request id)."""
    note = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    if token is None:
        body = note
    else:
        body = f"""{note}
<p>An application asks to access your accounts and trade on your behalf.</p>
<form method="post" action="authorize">
  <input type="hidden" name="{field}" value="{html.escape(token)}">
  <label>Username <input name="username" autocomplete="username"></label>
  <label>Password <input name="password" type="password" autocomplete="current-password"></label>
  <button type="submit" name="decision" value="accept">Allow</button>
  <button type="submit" name="decision" value="deny">Deny</button>
</form>"""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>IBKR sandbox: authorize</title>
<style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto}}label{{display:block;margin:.5rem 0}}
.error{{color:#a00}}</style></head>
<body><h1>IBKR sandbox login</h1>{body}</body></html>"""
