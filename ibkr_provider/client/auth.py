"""Authentication strategies: how the client gets the credentials ``/v1/api`` accepts.

A strategy turns an :class:`IbkrClientConfig` into a :class:`SessionTokens` (what to send on
every API call) and knows the headers to send. The brokerage-session steps that follow
(``/sso/validate``, ``/iserver/auth/ssodh/init``, the ``/iserver/accounts`` pre-flight) are the
same for every strategy and live in the client. New methods (IBKR's self-service OAuth 1.0a
for individual accounts) plug in by implementing :class:`AuthStrategy`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ibkr_provider.client.config import AuthType, IbkrClientConfig
from ibkr_provider.client.errors import IbkrAuthError, IbkrConfigError, IbkrErrorCode, IbkrResponseError
from ibkr_provider.client.http.transport import HttpTransport
from ibkr_provider.client.jwt_signing import AssertionSigner
from ibkr_provider.client.models.session import AccessToken, SsoSession

log = logging.getLogger(__name__)

SecretSink = Callable[[str], None]

#: IBKR's sample requests only this scope; it allows creating SSO sessions for end users.
TOKEN_SCOPE = "sso-sessions.write"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Where to look when IBKR refuses a login step.
TOKEN_HINT = (
    "the connection's login (OAuth 2.0 client id), private_key and client_key_id (kid): IBKR must "
    "hold the key's public half under that kid for that client id"
)
SSO_SESSION_HINT = "the connection's credential (the IBKR username the client may act for) and ip"
#: Used when the token response omits ``expires_in`` (IBKR's typical value is UNCONFIRMED).
DEFAULT_ACCESS_TOKEN_LIFETIME_SECONDS = 600


@dataclass(frozen=True)
class SessionTokens:
    """What the client authenticates every ``/v1/api`` call with (the OAuth 2.0 SSO bearer, the
    OAuth 1.0a live session token), and when it lapses (epoch seconds).

    Gateway sessions have no tokens: the gateway process holds the session.
    """

    bearer: str | None = field(default=None, repr=False)
    access_token: AccessToken | None = None
    expires_at: float | None = None


#: Returns a send time (epoch seconds) reserved with the pacer: never earlier than any before.
Stamp = Callable[[], int]


class AuthStrategy(Protocol):
    """One way of authenticating to the IBKR Web API."""

    def open(self, transport: HttpTransport, stamp: Stamp) -> SessionTokens:
        """Run the steps that precede ``/v1/api`` access and return the tokens."""

    def headers_for(
        self, bearer: str | None, *, method: str, url: str, query: Mapping[str, str], timestamp: int
    ) -> Mapping[str, str]:
        """Headers for one attempt of a ``/v1/api`` request on the session whose token is
        ``bearer``; ``url`` has no query string, ``query`` holds its parameters."""


class GatewayAuth:
    """A Client Portal Gateway holds the session after the user logs in through its web page;
    clients send no Authorization header."""

    def open(self, transport: HttpTransport, stamp: Stamp) -> SessionTokens:
        return SessionTokens()

    def headers_for(
        self, bearer: str | None, *, method: str, url: str, query: Mapping[str, str], timestamp: int
    ) -> Mapping[str, str]:
        return {}


class OAuth2PrivateKeyJwtAuth:
    """IBKR OAuth 2.0: signed client assertion -> access token -> SSO session bearer.

    Step 1 ``POST /oauth2/api/v1/token`` (form, ``grant_type=client_credentials``, RS256 client
    assertion, scope ``sso-sessions.write``); step 2 ``POST /gw/api/v1/sso-sessions`` with the
    access token as Bearer and a signed JWT (``credential``, ``ip``) as ``application/jwt`` body.
    The SSO access token is the bearer for every ``/v1/api`` call.
    """

    def __init__(
        self,
        config: IbkrClientConfig,
        *,
        secret_sink: SecretSink,
        clock: Callable[[], float] = time.time,
    ) -> None:
        config.check_complete()  # raises IbkrConfigError naming the first missing field
        client_id, key, credential, ip = (
            config.client_id,
            config.private_key_pem,
            config.credential,
            config.ip,
        )
        if not (client_id and key and credential and ip):
            raise IbkrConfigError("auth_type", "the oauth2 settings are incomplete")
        self._config = config
        self._credential, self._ip = credential, ip
        self._signer = AssertionSigner(
            client_id=client_id, key_id=config.client_key_id, private_key_pem=key, clock=clock
        )
        self._sink = secret_sink
        self._clock = clock

    def request_access_token(self, transport: HttpTransport) -> AccessToken:
        """Step 1: trade a freshly signed client assertion for an access token."""
        assertion = self._signer.client_assertion()
        self._sink(assertion)
        started = self._clock()
        body = transport.send(
            "POST",
            self._config.token_url,
            headers={"Accept": "application/json"},
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": assertion,
                "scope": TOKEN_SCOPE,
            },
            auth_hint=TOKEN_HINT,
        )
        if not isinstance(body, Mapping) or not isinstance(body.get("access_token"), str):
            raise IbkrResponseError(
                "the token endpoint answered without an access_token", endpoint="/oauth2/api/v1/token"
            )
        token = str(body["access_token"])
        self._sink(token)
        lifetime = body.get("expires_in")
        seconds = (
            float(lifetime) if isinstance(lifetime, (int, float)) else DEFAULT_ACCESS_TOKEN_LIFETIME_SECONDS
        )
        log.info("IBKR OAuth 2.0 access token obtained (expires in %.0f s)", seconds)
        return AccessToken(token=token, expires_at=started + seconds, scope=body.get("scope"))

    def create_sso_session(self, transport: HttpTransport, access_token: AccessToken) -> SsoSession:
        """Step 2: open an SSO session for the configured username; returns the API bearer."""
        signed = self._signer.sso_session_jwt(credential=self._credential, ip=self._ip)
        self._sink(signed)
        body = transport.send(
            "POST",
            self._config.sso_sessions_url,
            headers={
                "Authorization": f"Bearer {access_token.token}",
                "Content-Type": "application/jwt",
                "Accept": "application/json",
            },
            data=signed,
            auth_hint=SSO_SESSION_HINT,
        )
        if not isinstance(body, Mapping) or not isinstance(body.get("access_token"), str):
            raise IbkrResponseError(
                "the SSO session endpoint answered without an access_token",
                endpoint="/gw/api/v1/sso-sessions",
            )
        bearer = str(body["access_token"])
        self._sink(bearer)
        if body.get("active") is False:
            raise IbkrAuthError(
                f"IBKR created an inactive SSO session for credential {self._config.credential!r}",
                endpoint="/gw/api/v1/sso-sessions",
                code=IbkrErrorCode.AUTH,
                hint=SSO_SESSION_HINT,
            )
        log.info("IBKR SSO session opened for credential %s", self._config.credential)
        return SsoSession(
            bearer=bearer, active=True, raw={k: v for k, v in body.items() if k != "access_token"}
        )

    def open(self, transport: HttpTransport, stamp: Stamp) -> SessionTokens:
        access = self.request_access_token(transport)
        sso = self.create_sso_session(transport, access)
        return SessionTokens(bearer=sso.bearer, access_token=access, expires_at=access.expires_at)

    def headers_for(
        self, bearer: str | None, *, method: str, url: str, query: Mapping[str, str], timestamp: int
    ) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {bearer}"} if bearer else {}


def build_auth(config: IbkrClientConfig, *, secret_sink: SecretSink) -> AuthStrategy:
    """The strategy for ``config.auth_type``."""
    if config.auth_type is AuthType.GATEWAY:
        return GatewayAuth()
    if config.auth_type is AuthType.OAUTH1A:
        from ibkr_provider.client.oauth1_auth import OAuth1aAuth

        return OAuth1aAuth(config, secret_sink=secret_sink)
    return OAuth2PrivateKeyJwtAuth(config, secret_sink=secret_sink)
