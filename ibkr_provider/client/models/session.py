"""Typed, frozen results of the session endpoints: the login tokens, the brokerage session's
status, the tickle, and the ``/iserver/accounts`` pre-flight.

Each model keeps the decoded payload in ``raw`` so nothing IBKR sent is lost; parsers are strict
about what the provider relies on and raise :class:`IbkrResponseError` rather than returning a
half-filled object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ibkr_provider.client.errors import IbkrResponseError
from ibkr_provider.client.models._json import (
    Json,
    flag,
    optional_int,
    optional_mapping,
    optional_text,
    require_mapping,
)


@dataclass(frozen=True)
class AccessToken:
    """OAuth 2.0 access token (step 1); ``expires_at`` is epoch seconds."""

    token: str = field(repr=False)
    expires_at: float
    scope: str | None = None


@dataclass(frozen=True)
class SsoSession:
    """SSO session bearer (step 2) used as ``Authorization: Bearer`` on ``/v1/api``."""

    bearer: str = field(repr=False)
    active: bool
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class BrokerageSessionStatus:
    """``/iserver/auth/status`` and ``/iserver/auth/ssodh/init``: the brokerage session state.

    Healthy means authenticated, connected and not competing (the check ibind uses too).
    """

    authenticated: bool
    competing: bool
    connected: bool
    message: str
    fail: str
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def healthy(self) -> bool:
        return self.authenticated and self.connected and not self.competing

    @classmethod
    def from_json(cls, payload: Json) -> BrokerageSessionStatus:
        data = require_mapping(payload, "brokerage session status")
        return cls(
            authenticated=flag(data, "authenticated", "brokerage session status"),
            competing=flag(data, "competing", "brokerage session status"),
            connected=flag(data, "connected", "brokerage session status"),
            message=str(data.get("message") or ""),
            fail=str(data.get("fail") or ""),
            raw=data,
        )


@dataclass(frozen=True)
class TickleResult:
    """``/tickle``: keep-alive answer with the SSO countdown and the brokerage status."""

    session: str | None = field(repr=False)
    sso_expires_ms: int | None
    brokerage: BrokerageSessionStatus | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, payload: Json) -> TickleResult:
        data = require_mapping(payload, "/tickle")
        auth = optional_mapping(data, "iserver", "/tickle").get("authStatus")
        return cls(
            session=optional_text(data, "session", "/tickle"),
            sso_expires_ms=optional_int(data, "ssoExpires", "/tickle"),
            brokerage=BrokerageSessionStatus.from_json(auth) if isinstance(auth, Mapping) else None,
            raw=data,
        )


@dataclass(frozen=True)
class BrokerageAccounts:
    """``GET /iserver/accounts``: the pre-flight IBKR requires before trading and market data."""

    accounts: tuple[str, ...]
    selected_account: str | None
    is_paper: bool | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, payload: Json) -> BrokerageAccounts:
        data = require_mapping(payload, "/iserver/accounts")
        accounts = data.get("accounts")
        if not isinstance(accounts, list):
            raise IbkrResponseError("/iserver/accounts answered without an 'accounts' list")
        return cls(
            accounts=tuple(str(a) for a in accounts),
            selected_account=optional_text(data, "selectedAccount", "/iserver/accounts"),
            is_paper=data.get("isPaper") if isinstance(data.get("isPaper"), bool) else None,
            raw=data,
        )
