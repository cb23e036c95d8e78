"""What the Connect IBKR page says of each IBKR connection: its real state, not "configured".

- a consumer profile (oauth1a, no access token, refers to no profile; or an oauth2 app profile,
  an issuer and no refresh token): it starts consents;
- token missing (a connection Connect IBKR made, disconnected since: it refers to a profile but
  holds no access or refresh token): connect it again;
- needs consent again (an OAuth 2.0 grant the authorization server refused: revoked, reused);
- otherwise the hook's own Test (what the UI's Test button runs: it proves the credentials and
  takes no one's session), "connected and tested" with the accounts, or "test failing" with the
  reason.

Tests run in worker threads, all at once, bounded by :data:`TEST_SECONDS` in total, and a
result is kept :data:`KEEP_SECONDS` per connection version (a changed connection is tested
again), so a page opened several times a minute asks IBKR once.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from ibkr_provider.client.errors import CONSENT_AGAIN

#: How long the page waits for the tests in total.
TEST_SECONDS = 30.0
#: How long a test's result stands for an unchanged connection.
KEEP_SECONDS = 60.0

_KEPT: dict[tuple[str, str], tuple[float, ConnState]] = {}


@dataclass(frozen=True)
class ConnState:
    """``kind``: ``profile``, ``missing``, ``ok``, ``failing``, ``invalid`` or ``slow``."""

    kind: str
    text: str

    @property
    def css(self) -> str:
        return {"ok": "ok", "missing": "bad", "failing": "bad", "invalid": "bad", "slow": "bad"}.get(
            self.kind, ""
        )


def auth_label(conn: Any) -> str:
    """The connection's auth type as the page shows it (``?`` for one whose fields disagree:
    its state names why)."""
    from ibkr_provider.client.errors import IbkrConfigError
    from ibkr_provider.hooks.connection import auth_type_of

    try:
        return auth_type_of(conn.conn_type, conn.extra_dejson)
    except IbkrConfigError:
        return "?"


def static_state(conn: Any) -> ConnState | None:
    """The state the connection's fields tell without asking IBKR (None: test it)."""
    from ibkr_provider.client.errors import IbkrConfigError
    from ibkr_provider.hooks.connection import auth_type_of
    from ibkr_provider.plugins.connections import is_oauth2_profile

    extra = conn.extra_dejson
    try:
        auth = auth_type_of(conn.conn_type, extra)
    except IbkrConfigError as exc:
        return ConnState("invalid", f"invalid: {exc}")
    if auth == "oauth1a" and not extra.get("access_token"):
        if extra.get("consumer_profile"):
            return ConnState("missing", "token missing: connect it again with Connect IBKR below")
        return ConnState("profile", "consumer profile: starts the consents below")
    if auth == "oauth2" and extra.get("consumer_profile") and not extra.get("refresh_token"):
        return ConnState("missing", "token missing: connect it again with Connect IBKR below")
    if is_oauth2_profile(conn.conn_type, extra):
        return ConnState("profile", "OAuth 2.0 app profile: starts the consents below")
    return None


def _tested(conn: Any) -> ConnState:
    from ibkr_provider.hooks.ibkr import IbkrHook

    exported = conn.as_json()  # the connection's version: an edited one is tested again
    key = (conn.conn_id, hashlib.sha256(exported.encode()).hexdigest())
    kept = _KEPT.get(key)
    if kept is not None and time.monotonic() - kept[0] < KEEP_SECONDS:
        return kept[1]
    ok, message = IbkrHook.of_connection(conn).test_connection()
    if ok:
        state = ConnState("ok", f"connected and tested: {message}")
    elif CONSENT_AGAIN in message:
        state = ConnState("failing", f"needs consent again: {message}")
    else:
        state = ConnState("failing", f"test failing: {message}")
    _KEPT[key] = (time.monotonic(), state)
    return state


async def connection_states(conns: list[Any]) -> dict[str, ConnState]:
    """Connection id -> its state; the ones to test are tested at once, in threads."""
    states = {conn.conn_id: state for conn in conns if (state := static_state(conn)) is not None}
    to_test = [conn for conn in conns if conn.conn_id not in states]
    tasks = {conn.conn_id: asyncio.ensure_future(asyncio.to_thread(_tested, conn)) for conn in to_test}
    if tasks:
        await asyncio.wait(tasks.values(), timeout=TEST_SECONDS)
    for conn_id, task in tasks.items():
        if task.done() and task.exception() is None:
            states[conn_id] = task.result()
        elif task.done():
            states[conn_id] = ConnState("failing", f"test failing: {task.exception()}")
        else:
            states[conn_id] = ConnState(
                "slow", f"test still running after {TEST_SECONDS:g} s: IBKR is slow to answer"
            )
    return states
