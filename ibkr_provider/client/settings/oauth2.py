"""IBKR OAuth 2.0 settings: the app's client id, key id and private key, the IBKR username the
session is for, and the public IP IBKR embeds in the SSO session."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ibkr_provider.client.errors import IbkrConfigError
from ibkr_provider.client.keys import load_rsa_private_key
from ibkr_provider.client.pem import read_pem
from ibkr_provider.client.settings.base import AuthType, text_of

DEFAULT_CLIENT_KEY_ID = "main"


@dataclass(frozen=True)
class OAuth2Settings:
    """Complete, checked OAuth 2.0 settings (the key is loaded once to check it)."""

    client_id: str
    credential: str
    ip: str
    private_key_pem: str = field(repr=False)
    client_key_id: str = DEFAULT_CLIENT_KEY_ID

    @property
    def auth_type(self) -> AuthType:
        return AuthType.OAUTH2

    @property
    def identity(self) -> tuple[str | None, str | None]:
        return self.client_id, self.credential

    @property
    def username(self) -> str | None:
        return self.credential

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> OAuth2Settings:
        """Every OAuth 2.0 field, checked; the first one missing or wrong is named."""
        client_id, pem, key_id = app_identity(values, "set private_key (PEM) or private_key_path")
        credential = text_of(values, "credential")
        if not credential:
            raise IbkrConfigError("credential", "oauth2 needs the IBKR username the session is opened for")
        return cls(
            client_id=client_id,
            credential=credential,
            ip=public_ip(values),
            private_key_pem=pem,
            client_key_id=key_id,
        )


def app_identity(values: Mapping[str, Any], key_fix: str) -> tuple[str, str, str]:
    """The app's client id (the connection's login), private key PEM (loaded once to check it)
    and key id, each checked; ``key_fix`` says where the key comes from for this kind of
    connection."""
    client_id = text_of(values, "client_id")
    if not client_id:
        raise IbkrConfigError("login", "the OAuth 2.0 client id is missing; put it in the connection's login")
    pem = read_pem(values, "private_key")
    if not pem:
        raise IbkrConfigError("private_key", f"oauth2 needs the app's RSA private key: {key_fix}")
    load_rsa_private_key(pem, "private_key")
    return client_id, pem, text_of(values, "client_key_id") or DEFAULT_CLIENT_KEY_ID


def public_ip(values: Mapping[str, Any]) -> str:
    """The public IP IBKR embeds in the SSO session: given, never looked up."""
    ip = text_of(values, "ip")
    if not ip:
        raise IbkrConfigError(
            "ip",
            "oauth2 needs the public IP address your requests leave from (IBKR embeds it in the SSO "
            "session); it is never looked up automatically",
        )
    return ip
