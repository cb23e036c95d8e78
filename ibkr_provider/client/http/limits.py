"""IBKR's published pacing limits, as the client's pacer applies them.

Source: IBKR's "Pacing Limitations" (https://www.interactivebrokers.com/campus/ibkr-api-page/cpapi-v1/
and the Web API documentation's pacing section). The sandbox keeps its own copy, and a test
compares the two. Two IBKR texts disagree on the global limit: the Web API
documentation says 50 requests/s per authenticated username (10/s through the CP Gateway),
the older Client Portal page says 10/s globally. The provider defaults to 50/s for OAuth and
10/s for the gateway; the connection field ``rate_limit`` overrides it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

DEFAULT_OAUTH_RATE_LIMIT = 50.0
DEFAULT_GATEWAY_RATE_LIMIT = 10.0


@dataclass(frozen=True)
class EndpointLimit:
    """``limit`` requests per ``per_seconds`` for requests whose method and path match."""

    name: str
    method: str
    pattern: str
    limit: int
    per_seconds: float

    def matches(self, method: str, path: str) -> bool:
        """``path`` is relative to ``/v1/api`` (e.g. ``/portfolio/accounts``)."""
        return (self.method == "*" or self.method == method.upper()) and re.fullmatch(
            self.pattern, path
        ) is not None


#: The per-endpoint table (IBKR writes ``/iserver/account/orders``; one draft writes ``/iserver/orders``).
ENDPOINT_LIMITS: tuple[EndpointLimit, ...] = (
    EndpointLimit("marketdata_snapshot", "GET", r"/iserver/marketdata/snapshot", 10, 1.0),
    EndpointLimit("live_orders", "GET", r"/iserver/account/orders", 1, 5.0),
    EndpointLimit("trades", "GET", r"/iserver/account/trades", 1, 5.0),
    EndpointLimit("pnl", "GET", r"/iserver/account/pnl/partitioned", 1, 5.0),
    EndpointLimit("portfolio_accounts", "GET", r"/portfolio/(sub)?accounts", 1, 5.0),
    EndpointLimit("scanner_params", "GET", r"/iserver/scanner/params", 1, 900.0),
    EndpointLimit("scanner_run", "POST", r"/iserver/scanner/run", 1, 1.0),
    EndpointLimit("pa", "POST", r"/pa/(performance|summary|transactions)", 1, 900.0),
    EndpointLimit("fyi", "*", r"/fyi/.*", 1, 1.0),
    EndpointLimit("tickle", "*", r"/tickle", 1, 1.0),
    EndpointLimit("sso_validate", "GET", r"/sso/validate", 1, 60.0),
)


@functools.lru_cache(maxsize=1024)
def endpoint_limit(method: str, path: str) -> EndpointLimit | None:
    """The per-endpoint limit that applies to a ``/v1/api`` request, if any (looked up once per
    method and path: every request asks)."""
    for entry in ENDPOINT_LIMITS:
        if entry.matches(method, path):
            return entry
    return None
