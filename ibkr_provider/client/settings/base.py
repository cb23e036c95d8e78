"""What every auth type's settings share: the enum that names them and the interface the
client reads (who the session belongs to, for the shared cache's key)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Protocol


class AuthType(str, enum.Enum):
    """How the client authenticates.

    ``oauth2``: IBKR OAuth 2.0 with ``private_key_jwt`` client authentication (RFC 7521/7523),
    the only client authentication IBKR supports for OAuth 2.0.
    ``oauth1a``: IBKR's self-service OAuth 1.0a for individual accounts (consumer key, access
    token and secret, signature and encryption keys, DH parameters): a live session token.
    ``gateway``: a Client Portal Gateway the user runs and logs in to; it holds the session, so
    no Authorization header is sent.
    """

    OAUTH2 = "oauth2"
    OAUTH1A = "oauth1a"
    GATEWAY = "gateway"


class AuthSettings(Protocol):
    """One auth type's validated settings."""

    @property
    def auth_type(self) -> AuthType:
        """Which auth type these settings are for."""

    @property
    def identity(self) -> tuple[str | None, str | None]:
        """Who the session belongs to, for the shared cache's key."""

    @property
    def username(self) -> str | None:
        """The IBKR username when the settings name it (OAuth 2.0's ``credential``)."""


def text_of(values: Mapping[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` set to a non-blank value, stripped; None when none is."""
    for key in keys:
        raw = values.get(key)
        if raw is not None and str(raw).strip():
            return str(raw).strip()
    return None
