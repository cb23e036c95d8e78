"""IBKR's pacing limits as the sandbox enforces them, written from IBKR's documentation.

Sources: "Pacing Limitations" on IBKR's Client Portal API page
(https://www.interactivebrokers.com/campus/ibkr-api-page/cpapi-v1/#pacing-limitations) and the
Web API documentation's pacing section, which gives the same per-endpoint values. The two
disagree on the global limit: 50 requests/s per username for the Web API (10/s through the CP
Gateway) against 10/s on the older page; the sandbox takes 50 (OAuth) and 10 (gateway) and lets
``--rate-limit`` change it.

This table is the sandbox's own on purpose: the provider keeps its copy in
``ibkr_provider/client/limits.py``, and a test compares the two, so a wrong row on either side
fails a test instead of agreeing with itself.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from dataclasses import dataclass

OAUTH_GLOBAL_PER_SECOND = 50.0
GATEWAY_GLOBAL_PER_SECOND = 10.0


@dataclass(frozen=True)
class PacingRule:
    """At most ``requests`` per ``seconds`` for one username, on requests that match."""

    bucket: str
    method: str
    path: re.Pattern[str]
    requests: int
    seconds: float

    def applies(self, method: str, api_path: str) -> bool:
        """``api_path`` is below ``/v1/api``, e.g. ``/portfolio/accounts``."""
        return (self.method == "*" or self.method == method.upper()) and bool(self.path.fullmatch(api_path))


def _rule(bucket: str, method: str, pattern: str, requests: int, seconds: float) -> PacingRule:
    return PacingRule(bucket, method, re.compile(pattern), requests, seconds)


#: IBKR's per-endpoint table, row by row as documented.
RULES: tuple[PacingRule, ...] = (
    _rule("marketdata_snapshot", "GET", r"/iserver/marketdata/snapshot", 10, 1.0),
    _rule("live_orders", "GET", r"/iserver/account/orders", 1, 5.0),
    _rule("trades", "GET", r"/iserver/account/trades", 1, 5.0),
    _rule("pnl", "GET", r"/iserver/account/pnl/partitioned", 1, 5.0),
    _rule("portfolio_accounts", "GET", r"/portfolio/accounts", 1, 5.0),
    _rule("portfolio_subaccounts", "GET", r"/portfolio/subaccounts", 1, 5.0),
    _rule("scanner_params", "GET", r"/iserver/scanner/params", 1, 900.0),
    _rule("scanner_run", "POST", r"/iserver/scanner/run", 1, 1.0),
    _rule("pa_performance", "POST", r"/pa/performance", 1, 900.0),
    _rule("pa_summary", "POST", r"/pa/summary", 1, 900.0),
    _rule("pa_transactions", "POST", r"/pa/transactions", 1, 900.0),
    _rule("fyi", "*", r"/fyi/.+", 1, 1.0),
    _rule("tickle", "*", r"/tickle", 1, 1.0),
    _rule("sso_validate", "GET", r"/sso/validate", 1, 60.0),
)


def rule_for(method: str, api_path: str) -> PacingRule | None:
    """The documented per-endpoint rule for a request, if any."""
    return next((rule for rule in RULES if rule.applies(method, api_path)), None)


class PacingLedger:
    """Arrivals per (username, bucket) and the penalty box, under a lock of their own.

    A request over the global or a per-endpoint limit puts the username in the penalty box
    (IBKR: 10-15 minutes; ``penalty_seconds`` here); requests in the box are refused and not
    counted.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: (username, bucket) -> arrival times inside the current window
        self._windows: dict[tuple[str, str], deque[float]] = {}
        #: username -> time its penalty box ends
        self._penalty_until: dict[str, float] = {}
        #: what the last violation saw, for the stats: a failed test says which window broke
        self.last_violation: dict[str, object] | None = None

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()
            self._penalty_until.clear()
            self.last_violation = None

    def admit(
        self,
        username: str,
        method: str,
        api_path: str,
        now: float,
        *,
        earliest: float | None = None,
        global_limit: float,
        endpoint_limits: bool,
        penalty_seconds: float,
    ) -> tuple[float | None, str | None]:
        """(None, None) when admitted; else (seconds until the box opens, the bucket broken or
        None when the username was already in the box). ``now`` is the request's arrival,
        read by the caller as it came in (callers admit in arrival order), so neither a wait
        for this lock nor a busy server bunches arrivals that were spaced. ``earliest`` (default
        ``now``) is how early it may have arrived when the server was stalled before reading it
        (:mod:`ibkr_sandbox.loopwatch`): later requests' windows count it from then (a window
        is pruned in arrival order, so it never leaves before a request read ahead of it)."""
        with self._lock:
            until = self._penalty_until.get(username, 0.0)
            if now < until:
                return until - now, None
            checks: list[tuple[str, float, float]] = [("global", global_limit, 1.0)]
            rule = rule_for(method, api_path) if endpoint_limits else None
            if rule is not None:
                checks.append((rule.bucket, float(rule.requests), rule.seconds))
            for bucket, limit, window in checks:
                arrivals = self._windows.setdefault((username, bucket), deque())
                while arrivals and arrivals[0] <= now - window:
                    arrivals.popleft()
                if len(arrivals) >= limit:
                    self.last_violation = {
                        "bucket": bucket,
                        "limit": limit,
                        "window_seconds": window,
                        "counted_ms_before": [round((now - t) * 1000, 1) for t in arrivals],
                        "read_after_a_stall_ms": round((now - (earliest or now)) * 1000, 1),
                    }
                    self._penalty_until[username] = now + penalty_seconds
                    return max(penalty_seconds, 0.001), bucket
            counted_from = now if earliest is None else min(earliest, now)
            for bucket, _, _ in checks:
                self._windows[(username, bucket)].append(counted_from)
            return None, None
