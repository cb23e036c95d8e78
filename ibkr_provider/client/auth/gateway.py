"""Gateway mode: the Client Portal Gateway holds the session after the user logs in through its
web page; the client sends no Authorization header and needs no tokens."""

from __future__ import annotations

from collections.abc import Mapping

from ibkr_provider.client.auth.base import SessionTokens, Stamp
from ibkr_provider.client.http.transport import HttpTransport


class GatewayAuth:
    """A Client Portal Gateway holds the session after the user logs in through its web page;
    clients send no Authorization header."""

    def open(self, transport: HttpTransport, stamp: Stamp) -> SessionTokens:
        return SessionTokens()

    def headers_for(
        self, bearer: str | None, *, method: str, url: str, query: Mapping[str, str], timestamp: int
    ) -> Mapping[str, str]:
        return {}
