"""OAuth 2.0 authorization code with PKCE and ``private_key_jwt``: how a registered app gets a
user's own token (Connect IBKR), keeps it fresh and gives it back.

IBKR has not published an authorize endpoint for its Web API (it shares OAuth 2.0 material with
approved vendors privately; its public AI endpoint runs this very flow), so every step follows
the RFCs and every IBKR-specific value is configurable:

- discovery (RFC 8414): ``<issuer>/.well-known/oauth-authorization-server`` (a path in the
  issuer goes after the well-known part), or the profile's explicit ``authorize_url`` /
  ``token_url`` / ``revocation_url``;
- authorize (RFC 6749 4.1.1, RFC 7636): ``response_type=code``, ``client_id``, the exact
  ``redirect_uri``, ``scope``, ``state`` and always a S256 ``code_challenge``;
- token (RFC 6749 4.1.3, RFC 7523 2.2): ``grant_type=authorization_code``, ``code``,
  ``redirect_uri``, ``code_verifier``, and the client authenticated by a signed assertion (the
  only client authentication IBKR supports), ``aud`` the token endpoint unless configured;
- refresh (RFC 6749 6): ``grant_type=refresh_token``; a rotated refresh token replaces the old
  one, and a refused one (``invalid_grant``) means the user must consent again;
- revocation (RFC 7009): the refresh token, when the server advertises an endpoint.

A code and a refresh token are good once: those calls are never repeated after an ambiguous
failure. Every token is a secret the caller registers with its masker.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit, urlunsplit

from ibkr_provider.client.auth.jwt_signing import AssertionSigner
from ibkr_provider.client.errors import (
    CONSENT_AGAIN,
    IbkrAuthError,
    IbkrConfigError,
    IbkrErrorCode,
    IbkrResponseError,
)
from ibkr_provider.client.http.transport import HttpTransport
from ibkr_provider.client.settings.oauth2_user import OAuth2AppProfile

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
WELL_KNOWN = "/.well-known/oauth-authorization-server"
#: IBKR's only documented scope; a profile's ``scope`` extra overrides it (UNCONFIRMED for users).
DEFAULT_SCOPE = "sso-sessions.write"
#: Used when the token response omits ``expires_in``.
DEFAULT_LIFETIME_SECONDS = 600.0
#: Where to look when the authorization server refuses the app.
CLIENT_HINT = (
    "the consumer profile's login (client id), private_key and client_key_id: the authorization "
    "server must hold the key's public half under that kid"
)


@dataclass(frozen=True)
class AuthorizationServer:
    """Where the flow's steps go (discovered or configured)."""

    authorize_url: str
    token_url: str
    revocation_url: str | None = None
    issuer: str | None = None


@dataclass(frozen=True)
class Pkce:
    """A PKCE pair (RFC 7636): the verifier stays with the app, the S256 challenge goes to the
    authorize page."""

    verifier: str = field(repr=False)

    @classmethod
    def new(cls) -> Pkce:
        return cls(secrets.token_urlsafe(64))  # 86 characters, within RFC 7636's 43-128

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class UserTokens:
    """A user's tokens from the token endpoint. ``refresh_token`` is the one to use next: the
    rotated one, or the one sent when the server did not rotate."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float
    scope: str | None = None
    #: The IBKR username when the server names it (UNCONFIRMED field ``username``).
    username: str | None = None


def well_known_url(issuer: str) -> str:
    """RFC 8414 3: the metadata URL of ``issuer`` (a path goes after the well-known part)."""
    parts = urlsplit(issuer.rstrip("/"))
    return urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN + parts.path, "", ""))


def discover(issuer: str, http: HttpTransport) -> AuthorizationServer:
    """The server's endpoints from its RFC 8414 metadata; the metadata must name the same issuer
    and support the code flow with S256 (anything less cannot run this flow safely)."""
    url = well_known_url(issuer)
    body = http.send("GET", url, headers={"Accept": "application/json"}, auth_hint=CLIENT_HINT)
    if not isinstance(body, Mapping):
        raise IbkrResponseError("the authorization server metadata is not a JSON object", endpoint=url)
    if str(body.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise IbkrConfigError(
            "issuer",
            f"the metadata at {url} names issuer {body.get('issuer')!r}, not {issuer!r} (RFC 8414 3.3)",
        )
    methods = body.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        raise IbkrConfigError("issuer", f"{issuer} does not support PKCE with S256; Connect IBKR needs it")
    try:
        return AuthorizationServer(
            authorize_url=str(body["authorization_endpoint"]),
            token_url=str(body["token_endpoint"]),
            revocation_url=str(body["revocation_endpoint"]) if body.get("revocation_endpoint") else None,
            issuer=issuer,
        )
    except KeyError as exc:
        raise IbkrResponseError(
            f"the authorization server metadata lacks {exc.args[0]}", endpoint=url
        ) from None


def authorize_redirect(
    server: AuthorizationServer, *, client_id: str, redirect_uri: str, scope: str, state: str, pkce: Pkce
) -> str:
    """Where the user's browser goes to log in and consent."""
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
        }
    )
    separator = "&" if "?" in server.authorize_url else "?"
    return f"{server.authorize_url}{separator}{query}"


class TokenEndpoint:
    """The token and revocation calls of one app at one authorization server."""

    def __init__(
        self,
        server: AuthorizationServer,
        signer: AssertionSigner,
        *,
        audience: str | None = None,
        secret_sink: Callable[[str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.server = server
        self._signer = signer
        self._audience = audience or server.token_url
        self._sink = secret_sink
        self._clock = clock

    def _client_auth(self) -> dict[str, str]:
        assertion = self._signer.client_assertion(self._audience)
        self._sink(assertion)
        return {"client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": assertion}

    def _tokens(
        self, form: dict[str, str], http: HttpTransport, *, previous_refresh: str | None
    ) -> UserTokens:
        started = self._clock()
        body = http.send(
            "POST",
            self.server.token_url,
            headers={"Accept": "application/json"},
            data={**form, **self._client_auth()},
            auth_hint=CLIENT_HINT,
            idempotent=False,  # a code and a refresh token are good once
        )
        endpoint = urlsplit(self.server.token_url).path
        if not isinstance(body, Mapping) or not isinstance(body.get("access_token"), str):
            raise IbkrResponseError("the token endpoint answered without an access_token", endpoint=endpoint)
        access = str(body["access_token"])
        self._sink(access)
        refresh = body.get("refresh_token") or previous_refresh
        if not isinstance(refresh, str) or not refresh:
            raise IbkrResponseError(
                "the token endpoint answered without a refresh_token: the connection could not renew "
                "its access; ask for a scope that grants one",
                endpoint=endpoint,
            )
        self._sink(refresh)
        lifetime = body.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, (int, float)) else DEFAULT_LIFETIME_SECONDS
        username = body.get("username")
        return UserTokens(
            access_token=access,
            refresh_token=refresh,
            expires_at=started + seconds,
            scope=body.get("scope") if isinstance(body.get("scope"), str) else None,
            username=username if isinstance(username, str) and username else None,
        )

    def exchange_code(self, code: str, *, redirect_uri: str, pkce: Pkce, http: HttpTransport) -> UserTokens:
        """The consent's code for the user's tokens (the same ``redirect_uri`` as authorize)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": pkce.verifier,
        }
        return self._tokens(form, http, previous_refresh=None)

    def refresh(self, refresh_token: str, http: HttpTransport) -> UserTokens:
        """New tokens for a refresh token. A refused one (``invalid_grant``: revoked, reused,
        expired) raises :class:`IbkrAuthError` with code ``consent_required``: no retry can fix
        it, only the user consenting again."""
        try:
            return self._tokens(
                {"grant_type": "refresh_token", "refresh_token": refresh_token},
                http,
                previous_refresh=refresh_token,
            )
        except IbkrAuthError as exc:
            if exc.ibkr_code != "invalid_grant":
                raise
            raise IbkrAuthError(
                "the authorization server refused this connection's refresh token "
                f"({exc.ibkr_error or 'invalid_grant'}): the user's consent is no longer valid; "
                + CONSENT_AGAIN,
                endpoint=exc.endpoint,
                status=exc.status,
                ibkr_code="invalid_grant",
                code=IbkrErrorCode.CONSENT_REQUIRED,
                hint=CONSENT_AGAIN,
            ) from None

    def revoke(self, token: str, http: HttpTransport, *, hint: str = "refresh_token") -> bool:
        """RFC 7009: revoke ``token`` (a refresh token revokes its grant). False when the server
        advertises no revocation endpoint."""
        if not self.server.revocation_url:
            return False
        http.send(
            "POST",
            self.server.revocation_url,
            data={"token": token, "token_type_hint": hint, **self._client_auth()},
            auth_hint=CLIENT_HINT,
            idempotent=False,
        )
        return True


def endpoints_of(profile: OAuth2AppProfile, http: HttpTransport) -> AuthorizationServer:
    """The profile's explicit endpoints, else the issuer's discovered ones."""
    if profile.authorize_url and profile.token_url:
        return AuthorizationServer(
            authorize_url=profile.authorize_url,
            token_url=profile.token_url,
            revocation_url=profile.revocation_url,
            issuer=profile.issuer,
        )
    if not profile.issuer:  # parse() refuses such a profile
        raise IbkrConfigError("issuer", "set issuer, or authorize_url and token_url")
    return discover(profile.issuer, http)


def token_endpoint_of(
    profile: OAuth2AppProfile, server: AuthorizationServer, *, secret_sink: Callable[[str], None]
) -> TokenEndpoint:
    """The app's calls at ``server``'s token endpoint, signed with the profile's key."""
    signer = AssertionSigner.of_app(profile)
    return TokenEndpoint(server, signer, audience=profile.assertion_audience, secret_sink=secret_sink)
