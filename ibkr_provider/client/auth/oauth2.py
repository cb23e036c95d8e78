"""IBKR OAuth 2.0 with ``private_key_jwt``: signed client assertion -> access token -> SSO
session bearer (RFC 7521/7523, the only client authentication IBKR supports for OAuth 2.0)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from ibkr_provider.client.auth.base import SecretSink, SessionTokens, Stamp
from ibkr_provider.client.auth.jwt_signing import AssertionSigner
from ibkr_provider.client.errors import IbkrAuthError, IbkrErrorCode, IbkrResponseError
from ibkr_provider.client.http.transport import HttpTransport
from ibkr_provider.client.models.session import AccessToken, SsoSession
from ibkr_provider.client.settings.oauth2 import OAuth2Settings

log = logging.getLogger(__name__)

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


class OAuth2PrivateKeyJwtAuth:
    """IBKR OAuth 2.0: signed client assertion -> access token -> SSO session bearer.

    Step 1 ``POST /oauth2/api/v1/token`` (form, ``grant_type=client_credentials``, RS256 client
    assertion, scope ``sso-sessions.write``); step 2 ``POST /gw/api/v1/sso-sessions`` with the
    access token as Bearer and a signed JWT (``credential``, ``ip``) as ``application/jwt`` body.
    The SSO access token is the bearer for every ``/v1/api`` call.
    """

    def __init__(
        self,
        settings: OAuth2Settings,
        *,
        base_url: str,
        secret_sink: SecretSink,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._token_url = f"{base_url}/oauth2/api/v1/token"
        self._sso_sessions_url = f"{base_url}/gw/api/v1/sso-sessions"
        self._signer = AssertionSigner.of_app(settings, clock)
        self._sink = secret_sink
        self._clock = clock

    def request_access_token(self, transport: HttpTransport) -> AccessToken:
        """Step 1: trade a freshly signed client assertion for an access token."""
        assertion = self._signer.client_assertion()
        self._sink(assertion)
        started = self._clock()
        body = transport.send(
            "POST",
            self._token_url,
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
        return open_sso_session(
            transport,
            self._signer,
            access_token.token,
            credential=self._settings.credential,
            ip=self._settings.ip,
            url=self._sso_sessions_url,
            secret_sink=self._sink,
        )

    def open(self, transport: HttpTransport, stamp: Stamp) -> SessionTokens:
        access = self.request_access_token(transport)
        sso = self.create_sso_session(transport, access)
        return SessionTokens(bearer=sso.bearer, access_token=access, expires_at=access.expires_at)

    def headers_for(
        self, bearer: str | None, *, method: str, url: str, query: Mapping[str, str], timestamp: int
    ) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {bearer}"} if bearer else {}


def open_sso_session(
    transport: HttpTransport,
    signer: AssertionSigner,
    access_token: str,
    *,
    credential: str | None,
    ip: str,
    url: str,
    secret_sink: SecretSink,
) -> SsoSession:
    """``POST /gw/api/v1/sso-sessions``: an access token (the app's, or a user's own) and a signed
    JWT naming the username and public IP; returns the bearer of every ``/v1/api`` call."""
    signed = signer.sso_session_jwt(credential=credential, ip=ip)
    secret_sink(signed)
    body = transport.send(
        "POST",
        url,
        headers={
            "Authorization": f"Bearer {access_token}",
            "Content-Type": "application/jwt",
            "Accept": "application/json",
        },
        data=signed,
        auth_hint=SSO_SESSION_HINT,
    )
    if not isinstance(body, Mapping) or not isinstance(body.get("access_token"), str):
        raise IbkrResponseError(
            "the SSO session endpoint answered without an access_token", endpoint="/gw/api/v1/sso-sessions"
        )
    bearer = str(body["access_token"])
    secret_sink(bearer)
    who = credential or "the user's grant"
    if body.get("active") is False:
        raise IbkrAuthError(
            f"IBKR created an inactive SSO session for {who!r}",
            endpoint="/gw/api/v1/sso-sessions",
            code=IbkrErrorCode.AUTH,
            hint=SSO_SESSION_HINT,
        )
    log.info("IBKR SSO session opened for %s", who)
    return SsoSession(bearer=bearer, active=True, raw={k: v for k, v in body.items() if k != "access_token"})
