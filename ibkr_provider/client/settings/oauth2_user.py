"""A user's own OAuth 2.0 grant, made by Connect IBKR with the authorization-code flow: the
app's key (from the consumer profile) authenticates the app, the user's refresh token renews the
user's access, and that access opens the SSO and brokerage sessions like the app's own does.

An ``oauth2`` connection holding a ``refresh_token`` is such a grant; one without is the app's
client-credentials login (:class:`~ibkr_provider.client.settings.oauth2.OAuth2Settings`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ibkr_provider.client import fields
from ibkr_provider.client.errors import IbkrConfigError
from ibkr_provider.client.settings.base import AuthType, text_of
from ibkr_provider.client.settings.oauth2 import (
    DEFAULT_CLIENT_KEY_ID,
    OAuth2Settings,
    app_identity,
    public_ip,
)


def _url(values: Mapping[str, Any], name: str, fix: str) -> str | None:
    url = text_of(values, name)
    if url is not None and not url.startswith(("https://", "http://")):
        raise IbkrConfigError(name, f"{url!r} is not an http(s) URL; {fix}")
    return url


#: The ways a user's access token may reach ``/v1/api`` (field ``user_session``).
USER_SESSIONS = ("sso_sessions", "access_token")


def user_session_of(values: Mapping[str, Any]) -> str:
    chosen = (text_of(values, "user_session") or USER_SESSIONS[0]).lower()
    if chosen not in USER_SESSIONS:
        raise IbkrConfigError("user_session", f"{chosen[:40]!r} is not one of {', '.join(USER_SESSIONS)}")
    return chosen


@dataclass(frozen=True)
class OAuth2UserSettings:
    """Complete, checked settings of one user's grant."""

    client_id: str
    private_key_pem: str = field(repr=False)
    #: The refresh token Connect IBKR saved; the current one (after rotations) is in the session
    #: cache, tied to this one (:attr:`grant_id`).
    refresh_token: str = field(repr=False)
    token_url: str = ""
    ip: str = ""
    client_key_id: str = DEFAULT_CLIENT_KEY_ID
    revocation_url: str | None = None
    #: The client assertion's ``aud`` (default: the token endpoint's URL, RFC 7523 3).
    assertion_audience: str | None = None
    #: The IBKR username when the token endpoint named it; the SSO JWT leaves it out otherwise.
    credential: str | None = None
    #: How the user's access token reaches ``/v1/api`` (UNCONFIRMED which IBKR allows):
    #: ``sso_sessions`` opens an SSO session with it, as the app's own token does;
    #: ``access_token`` sends it as the bearer itself.
    user_session: str = "sso_sessions"

    @property
    def auth_type(self) -> AuthType:
        return AuthType.OAUTH2

    @property
    def grant_id(self) -> str:
        """Names this consent without revealing its token: a new consent is a new grant."""
        return hashlib.sha256(self.refresh_token.encode()).hexdigest()[:16]

    @property
    def identity(self) -> tuple[str | None, str | None]:
        return self.client_id, f"grant-{self.grant_id}"

    @property
    def username(self) -> str | None:
        return self.credential

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> OAuth2UserSettings:
        refresh = text_of(values, "refresh_token")
        if not refresh:
            raise IbkrConfigError("refresh_token", "the user's grant has no refresh token; connect it again")
        client_id, pem, key_id = app_identity(
            values, "set consumer_profile to the profile that holds it (Connect IBKR does), or private_key"
        )
        token_url = _url(values, "token_url", "set the authorization server's token endpoint")
        if not token_url:
            raise IbkrConfigError(
                "token_url", "a user's grant needs the token endpoint it renews at; connect it again"
            )
        return cls(
            client_id=client_id,
            private_key_pem=pem,
            refresh_token=refresh,
            token_url=token_url,
            ip=public_ip(values),
            client_key_id=key_id,
            revocation_url=_url(values, "revocation_url", "set the revocation endpoint or leave it empty"),
            assertion_audience=text_of(values, "assertion_audience"),
            credential=text_of(values, "credential"),
            user_session=user_session_of(values),
        )


@dataclass(frozen=True)
class OAuth2AppProfile:
    """An app's registration for the authorization-code flow (a consumer profile of auth type
    ``oauth2``): its client id, key id and private key, its authorization server (``issuer`` for
    RFC 8414 discovery, or explicit URLs), the scopes it asks for, and the IP its sessions are
    bound to."""

    client_id: str
    private_key_pem: str = field(repr=False)
    client_key_id: str = DEFAULT_CLIENT_KEY_ID
    issuer: str | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    revocation_url: str | None = None
    scope: str = "sso-sessions.write"
    assertion_audience: str | None = None
    ip: str = ""
    verify: bool | str = True
    timeout: float = 30.0

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> OAuth2AppProfile:
        client_id, pem, key_id = app_identity(values, "set private_key (PEM) or private_key_path")
        issuer = _url(values, "issuer", "set the authorization server's issuer URL")
        authorize = _url(values, "authorize_url", "set the authorize endpoint's URL")
        token = _url(values, "token_url", "set the token endpoint's URL")
        if not issuer and not (authorize and token):
            raise IbkrConfigError(
                "issuer", "an OAuth 2.0 app profile needs issuer (discovery), or authorize_url and token_url"
            )
        return cls(
            client_id=client_id,
            private_key_pem=pem,
            client_key_id=key_id,
            issuer=issuer,
            authorize_url=authorize,
            token_url=token,
            revocation_url=_url(values, "revocation_url", "set the revocation endpoint or leave it empty"),
            scope=text_of(values, "scope") or "sso-sessions.write",
            assertion_audience=text_of(values, "assertion_audience"),
            ip=public_ip(values),
            verify=fields.verify(values.get("verify"), error=IbkrConfigError),
        )


def parse_oauth2(values: Mapping[str, Any]) -> OAuth2Settings | OAuth2UserSettings:
    """An ``oauth2`` connection: a user's grant when it holds a refresh token, else the app's own
    client-credentials login."""
    if text_of(values, "refresh_token"):
        return OAuth2UserSettings.parse(values)
    return OAuth2Settings.parse(values)
