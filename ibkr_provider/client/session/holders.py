"""Which session of this deployment holds an IBKR user's brokerage session.

IBKR allows one brokerage session per username ("A single username can only have one brokerage
session active at a time across all IB platforms", Web API documentation, Sessions). Two
connections of one user (an OAuth 2.0 and an OAuth 1.0a connection, or one made by Connect IBKR)
have sessions of their own, and the second to open its brokerage session with ``compete: true``
took the first's over: its running tasks then failed, blaming "TWS, IBKR Mobile or Client
Portal", and nothing in the UI recovered it.

So the shared store keeps, per IBKR user, a marker naming the session that holds the
brokerage session; each record says who opened it (connection id, host, process). Before opening
a brokerage session the client looks: another live session of this deployment holds it, so it
does not displace that one unless told to (``displace_other_connections``, or the
``ibkr-provider reconnect`` command), and a takeover that does happen is reported with who took
it. The user is IBKR's ``userId`` from ``/tickle`` (UNCONFIRMED before the brokerage session
exists; when IBKR does not say it, the OAuth 2.0 ``credential`` stands in, and an OAuth 1.0a
connection whose user is unknown is not registered: IBKR's own competing flag then decides).
The marker only works between connections sharing one ``session_cache``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from ibkr_provider.client.session.record import SessionRecord
from ibkr_provider.client.session.stores.base import SessionStore


def owner_of(label: str | None) -> dict[str, Any]:
    """Who is opening a session: the connection id (or another label), host, process, time."""
    return {
        "conn_id": label or "(no connection id)",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": time.time(),
    }


def describe(owner: dict[str, Any] | None) -> str:
    """``connection ibkr_default (host worker-1, pid 4711, since 2026-12-04 15:20:01 UTC)``."""
    if not owner:
        return "a session of this deployment"
    since = dt.datetime.fromtimestamp(float(owner.get("since") or 0), dt.timezone.utc)
    return (
        f"connection {owner.get('conn_id')} (host {owner.get('host')}, pid {owner.get('pid')}, "
        f"since {since:%Y-%m-%d %H:%M:%S} UTC)"
    )


#: A holder that carried no request (nor keep-alive tickle) for this long is gone: IBKR ends an
#: idle session after about 5-10 minutes (UNCONFIRMED; ibind's and ibeam's observations).
HOLDER_IDLE_SECONDS = 600.0


class BrokerageHolders:
    """The per-user markers in ``store``."""

    def __init__(self, store: SessionStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    def _marker(self, user: str) -> str:
        # Not per API host: IBKR's one brokerage session per user spans every platform.
        return "holder-" + hashlib.sha256(user.encode()).hexdigest()[:32]

    def holder(self, user: str | None, *, besides: str) -> SessionRecord | None:
        """The live record of another session (not ``besides``) holding ``user``'s brokerage
        session, or None (nobody of this deployment, or a holder that is no longer alive)."""
        if not user:
            return None
        key = self._store.read_marker(self._marker(user))
        if not key or key == besides:
            return None
        record = self._store.load(key)
        now = self._clock()
        if record is None or not record.brokerage_ready or now >= record.expires_at:
            return None
        if now - self._store.last_used(key) > HOLDER_IDLE_SECONDS:
            return None  # idle beyond IBKR's timeout: nobody holds it any more
        return record

    def mark(self, user: str | None, key: str) -> None:
        """``key``'s session now holds ``user``'s brokerage session."""
        if user:
            self._store.write_marker(self._marker(user), key)
