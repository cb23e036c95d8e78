"""The OAuth 1.0a auth strategy: mint a live session token, sign every request with it.

``open`` runs IBKR's live-session-token exchange (``POST /v1/api/oauth/live_session_token``,
see :mod:`ibkr_provider.client.auth.oauth1a.signing`); the token is the session's secret, shared by every
process through the session cache like the OAuth 2.0 bearer, and renewed
``session_refresh_lead`` seconds before ``live_session_token_expiration``. Each attempt of each
request is signed with a fresh nonce and the second it goes out in, never before its pacing slot
(:meth:`~ibkr_provider.client.session.sender.SessionSender.send_second`): slots only grow across
the processes sharing the session, so timestamps follow the order requests reach IBKR (which
refuses one earlier than a request it already saw).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ibkr_provider.client.auth.base import SecretSink, SessionTokens, Stamp
from ibkr_provider.client.auth.oauth1a.signing import (
    LST_PATH,
    LiveSessionTokenExchange,
    authorization_header,
    new_nonce,
    signed_request_header,
)
from ibkr_provider.client.errors import IbkrResponseError
from ibkr_provider.client.http.transport import HttpTransport
from ibkr_provider.client.settings.oauth1a import OAuth1aSettings

log = logging.getLogger(__name__)

#: Where to look when IBKR refuses the live-session-token request (IBKR's error table).
LST_HINT = (
    "the consumer key (activated? a new one takes about a day, sometimes until the weekend), the "
    "access token and its secret (regenerate them in IBKR's self-service OAuth portal), the "
    "signature_private_key and the encryption_private_key whose public halves you uploaded (the "
    "encryption key decrypts the secret into part of what is signed), and the realm"
)


class OAuth1aAuth:
    """IBKR self-service OAuth 1.0a (individual accounts)."""

    def __init__(self, settings: OAuth1aSettings, *, api_url: str, secret_sink: SecretSink) -> None:
        self._credentials = settings
        self._api_url = api_url
        self._sink = secret_sink
        secret_sink(self._credentials.prepend)

    def open(self, transport: HttpTransport, stamp: Stamp) -> SessionTokens:
        exchange = LiveSessionTokenExchange(self._credentials)
        url = f"{self._api_url}{LST_PATH}"

        def signed() -> Mapping[str, str]:
            params = exchange.request_params(timestamp=stamp(), nonce=new_nonce())
            signature = exchange.sign(url, params)
            self._sink(signature)
            header = authorization_header(self._credentials.realm, {**params, "oauth_signature": signature})
            return {"Authorization": header}

        body = transport.send("POST", url, prepare=signed, idempotent=False, auth_hint=LST_HINT)
        if not isinstance(body, Mapping) or not all(
            isinstance(body.get(k), (str, int))
            for k in (
                "diffie_hellman_response",
                "live_session_token_signature",
                "live_session_token_expiration",
            )
        ):
            raise IbkrResponseError(
                "the live session token answer lacks its fields", endpoint=f"/v1/api{LST_PATH}"
            )
        lst = exchange.live_session_token(
            str(body["diffie_hellman_response"]), str(body["live_session_token_signature"])
        )
        self._sink(lst)
        expires_at = float(body["live_session_token_expiration"]) / 1000
        log.info("IBKR live session token obtained for consumer %s", self._credentials.consumer_key)
        return SessionTokens(bearer=lst, expires_at=expires_at)

    def headers_for(
        self, bearer: str | None, *, method: str, url: str, query: Mapping[str, str], timestamp: int
    ) -> Mapping[str, str]:
        if not bearer:
            return {}
        header = signed_request_header(
            self._credentials,
            bearer,
            method=method,
            url=url,
            query=query,
            timestamp=timestamp,
            nonce=new_nonce(),
        )
        return {"Authorization": header}
