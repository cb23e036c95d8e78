"""A user's own OAuth 2.0 grant (Connect IBKR, authorization code): the refresh token -> the
user's access token -> SSO session bearer, the brokerage session then set up like any other.

Single flight across processes and hosts: a refresh token is good once (rotation), so it is
used only under the session cache's grant lock, and its successor is written back to the cache
(encrypted with Airflow's Fernet key) before anything else happens. The connection keeps the
token Connect IBKR saved; the cache's record names the grant it continues (its id), so a new
consent on the same connection starts from its own token. A refused refresh token
(``invalid_grant``) is remembered: the connection then fails at once, asking for a new consent,
instead of asking the authorization server again on every retry.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping

from ibkr_provider.client.auth.base import SecretSink, SessionTokens, Stamp, TokenKeeper
from ibkr_provider.client.auth.jwt_signing import AssertionSigner
from ibkr_provider.client.auth.oauth2 import open_sso_session
from ibkr_provider.client.auth.oauth2_code import AuthorizationServer, TokenEndpoint
from ibkr_provider.client.errors import CONSENT_AGAIN, IbkrAuthError, IbkrErrorCode
from ibkr_provider.client.http.transport import HttpTransport
from ibkr_provider.client.models.session import AccessToken
from ibkr_provider.client.settings.oauth2_user import OAuth2UserSettings

log = logging.getLogger(__name__)


class OAuth2UserGrantAuth:
    """Opens sessions from a user's grant; see the module docstring."""

    def __init__(
        self,
        settings: OAuth2UserSettings,
        *,
        base_url: str,
        secret_sink: SecretSink,
        keeper: TokenKeeper,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._sso_sessions_url = f"{base_url}/gw/api/v1/sso-sessions"
        self._signer = AssertionSigner.of_app(settings, clock)
        server = AuthorizationServer(
            authorize_url="", token_url=settings.token_url, revocation_url=settings.revocation_url
        )
        self.endpoint = TokenEndpoint(
            server, self._signer, audience=settings.assertion_audience, secret_sink=secret_sink, clock=clock
        )
        self._keeper = keeper
        self._sink = secret_sink
        secret_sink(settings.refresh_token)

    def _kept(self) -> dict[str, str]:
        """The cache's record of this grant (empty when it holds another grant's or none)."""
        raw = self._keeper.read()
        try:
            kept = json.loads(raw) if raw else {}
        except ValueError:
            kept = {}
        if not isinstance(kept, dict) or kept.get("grant") != self._settings.grant_id:
            return {}
        return {k: str(v) for k, v in kept.items()}

    def current_refresh_token(self) -> str:
        """The refresh token to use next: the latest rotation, else the one Connect IBKR saved."""
        token = self._kept().get("refresh") or self._settings.refresh_token
        self._sink(token)
        return token

    def refreshed(self, transport: HttpTransport) -> tuple[str, float, str | None, str | None]:
        """Renew the user's access (single flight): (access token, expiry, scope, username)."""
        with self._keeper.locked():
            kept = self._kept()
            if kept.get("refused"):
                raise IbkrAuthError(
                    f"this connection's OAuth 2.0 grant was refused earlier ({kept['refused']}); "
                    + CONSENT_AGAIN,
                    endpoint="/token",
                    code=IbkrErrorCode.CONSENT_REQUIRED,
                    hint=CONSENT_AGAIN,
                )
            try:
                tokens = self.endpoint.refresh(self.current_refresh_token(), transport)
            except IbkrAuthError as exc:
                if exc.code is IbkrErrorCode.CONSENT_REQUIRED:
                    reason = exc.ibkr_error or "invalid_grant"
                    self._keeper.write(json.dumps({"grant": self._settings.grant_id, "refused": reason}))
                raise
            # the successor first: the old token is spent whatever happens next
            self._keeper.write(
                json.dumps({"grant": self._settings.grant_id, "refresh": tokens.refresh_token})
            )
        log.info("IBKR OAuth 2.0 user grant %s refreshed", self._settings.grant_id)
        return tokens.access_token, tokens.expires_at, tokens.scope, tokens.username

    def revoke(self, transport: HttpTransport) -> bool:
        """Disconnect: revoke the grant at the authorization server (RFC 7009) when it offers
        revocation; False when it does not, or the grant was refused already."""
        with self._keeper.locked():
            if self._kept().get("refused"):
                return False
            revoked = self.endpoint.revoke(self.current_refresh_token(), transport)
            if revoked:
                self._keeper.write(json.dumps({"grant": self._settings.grant_id, "refused": "revoked"}))
            return revoked

    def open(self, transport: HttpTransport, stamp: Stamp) -> SessionTokens:
        access, expires_at, scope, username = self.refreshed(transport)
        token = AccessToken(token=access, expires_at=expires_at, scope=scope)
        if self._settings.user_session == "access_token":  # the user's token is the bearer itself
            return SessionTokens(bearer=access, access_token=token, expires_at=expires_at)
        sso = open_sso_session(
            transport,
            self._signer,
            access,
            credential=self._settings.credential or username,
            ip=self._settings.ip,
            url=self._sso_sessions_url,
            secret_sink=self._sink,
        )
        return SessionTokens(bearer=sso.bearer, access_token=token, expires_at=expires_at)

    def headers_for(
        self, bearer: str | None, *, method: str, url: str, query: Mapping[str, str], timestamp: int
    ) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {bearer}"} if bearer else {}
