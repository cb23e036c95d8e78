"""What the sandbox's counters show when every process shared one IBKR session."""

from __future__ import annotations

import json
from typing import Any

#: The sandbox's seeded accounts, as every reader must list them.
ALL_ACCOUNTS = ["DU1234567", "DU2345678", "U3456789"]


def assert_single_flight(reports: list[dict[str, Any]]) -> None:
    """The processes really overlapped: every one asked for the session before the one that
    opened it was done (the sandbox holds the token request 1 s), so all but one waited for it
    on the lock rather than finding a finished session."""
    (opener,) = [r for r in reports if r["session"]["opened"]]
    assert all(r["asked_at"] < opener["session"]["opened_at"] for r in reports), reports
    waited = [r for r in reports if r is not opener and r["session"]["lock_wait_seconds"] > 0.2]
    assert len(waited) >= 1, reports


def assert_one_session(stats: dict[str, Any]) -> None:
    """OAuth 2.0: one token, one SSO session, one brokerage init; no 401, 429 or competing login."""
    # The whole record as text (pytest shortens a dict message), so a failure says which path
    # led to a second login: a 401, a recovery probe (/iserver/auth/status), or no record found.
    shown = json.dumps(stats, sort_keys=True)
    counts = (stats["token_requests"], stats["tokens_issued"], stats["sso_sessions"], stats["ssodh_inits"])
    assert counts == (1, 1, 1, 1), shown
    assert stats["http_401"] == 0 and stats["http_429"] == 0, shown
    assert stats.get("competing_takeovers", 0) == 0, shown


def assert_one_live_session_token(stats: dict[str, Any]) -> None:
    """OAuth 1.0a: one live session token, one brokerage init; no rejected signature, 401, 410,
    429 or competing login."""
    shown = json.dumps(stats, sort_keys=True)
    assert (stats["lst_issued"], stats["ssodh_inits"]) == (1, 1), shown
    assert stats.get("rejected_signatures", 0) == 0 and stats["http_401"] == 0 and stats["http_429"] == 0, (
        shown
    )
    assert stats.get("http_410", 0) == 0 and stats.get("competing_takeovers", 0) == 0, shown
