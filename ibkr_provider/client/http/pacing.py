"""Pacing: stay under IBKR's limits as one client, however many processes share the session.

IBKR paces per username: a global limit per second and per-endpoint limits (e.g. 1 request per
5 s for ``/portfolio/accounts``), counted in sliding one-second windows, with a 10-15 minute
penalty box for violators (IBKR's "Pacing Limitations"). Every request therefore reserves a send
time ("slot") in its per-endpoint bucket and sleeps until it, then does the same in the global
bucket.

Reservation, not polling: under the store's atomic operation a request claims the next free
slot (``max(now, next free)``) and moves the bucket's next free time one interval on, so slots
are handed out in order and none passes unused. (A rate limiter that answers "allowed / retry
after" makes every waiting process sleep to the same instant; one wins, the rest sleep again,
and slots go by with nobody awake to take them: measured at 1.65x the floor for eight
processes. pyrate-limiter, used before, works that way.) The buckets live in the session store,
so every process sharing a session draws from one budget.

Slots are spaced ``SAFETY_MARGIN`` wider than the limit: a request that reaches IBKR late
bunches up with the ones after it, and 10 % of a one-second window lets any request arrive up
to 100 ms late without putting limit + 1 requests into one window. A process that wakes more
than half of that after its slot gives the slot up and takes the next: the other half is for the
way to IBKR.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ibkr_provider.client.errors import IbkrError, IbkrErrorCode
from ibkr_provider.client.http.limits import EndpointLimit, endpoint_limit

log = logging.getLogger(__name__)

SAFETY_MARGIN = 1.10
#: Buckets paced across every session of the store, not per session: ``/tickle`` (IBKR: 1 per
#: second per username, a 10-15 minute penalty box). Two connections of one IBKR user have
#: sessions of their own, and each asks ``/tickle`` who the user is when it opens and keeps its
#: session alive with it; tickles are rare, so one shared budget costs nothing.
STORE_WIDE_BUCKETS = frozenset({"tickle"})
STORE_WIDE_KEY = "store-wide"


class SlotStore(Protocol):
    """What the pacer needs of a store: one atomic slot reservation, shared by every process
    (the session stores implement it: file lock, Redis script, process memory)."""

    def reserve_slot(self, key: str, bucket: str, *, earliest_ms: int, interval_ms: int) -> int:
        """Claim ``max(earliest_ms, next free)`` and move the bucket's next free time one
        ``interval_ms`` past it; return the claimed slot (epoch milliseconds)."""


class Pacer:
    """Shared slot reservations for one IBKR session (one username)."""

    def __init__(
        self,
        store: SlotStore,
        key: str,
        *,
        global_limit: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        if global_limit <= 0:
            raise ValueError("global_limit must be positive")
        self._store = store
        self._key = key
        self._global_interval_ms = interval_ms(global_limit, 1.0)
        self._global_late_ms = lateness_allowed_ms(global_limit, 1.0)
        self._clock = clock
        self._closed = threading.Event()
        #: Waits end early when the pacer is closed (unless a test gives its own sleep).
        self._sleep = sleep or self._closed.wait

    def close(self) -> None:
        """End every wait for good: a request waiting for its slot, or asking for one later,
        raises instead of being sent. A trigger cancelled while its poll waited 5 s for
        ``/iserver/account/trades`` otherwise held its thread that long and then sent the
        request for nobody, from a closed client."""
        self._closed.set()

    def pace_as(self, user: str | None) -> None:
        """Draw from ``user``'s buckets from now on (IBKR paces per username, and two
        connections of one user, an OAuth 2.0 and an OAuth 1.0a one, have sessions of their own:
        paced per session, they once sent two ``/portfolio/accounts`` within IBKR's 5 s and met
        its penalty box). Until the user is known (the login steps, which learn it), the
        session's buckets are used. The switch carries the global bucket's next free time over,
        so the slots the login steps took still count; an unknown user (a renewal before it is
        learnt again) keeps the user's buckets."""
        if not user:
            return
        key = "user-" + hashlib.sha256(user.encode()).hexdigest()[:32]
        if key == self._key:
            return
        # interval 0: reads the bucket's next free time, and raises the other's to it, taking no slot
        carried = self._store.reserve_slot(self._key, "global", earliest_ms=0, interval_ms=0)
        self._store.reserve_slot(key, "global", earliest_ms=carried, interval_ms=0)
        self._key = key

    def acquire(self, method: str, path: str) -> int:
        """Block until a request to ``path`` (below ``/v1/api``) may be sent; returns its slot
        (epoch milliseconds). Slots only grow, across every process sharing the store: OAuth
        1.0a's timestamps, which must not go backwards, are never earlier than the slot.

        A per-endpoint slot is waited out before the global one is taken: reserved together, a
        ``/portfolio/accounts`` waiting 5.5 s for its own slot held the global bucket's next free
        time 5.5 s ahead, and every other request of the user waited behind it."""
        entry = endpoint_limit(method, path)
        if entry is None:
            return self._wait_for_global_slot(method, path)
        while True:
            endpoint_slot = self._wait_for_endpoint_slot(entry)
            slot = self._wait_for_global_slot(method, path)
            # An endpoint slot is kept only while the request goes within half its bucket's margin:
            # a later one would crowd the bucket's next slot (IBKR: 1 per 5 s, slots 5.5 s apart).
            if self._now_ms() - endpoint_slot <= lateness_allowed_ms(entry.limit, entry.per_seconds):
                return slot
            log.debug("sent %s %s too late for its %s slot; taking a new one", method, path, entry.name)

    def _wait_for_endpoint_slot(self, entry: EndpointLimit) -> int:
        key = STORE_WIDE_KEY if entry.name in STORE_WIDE_BUCKETS else self._key
        interval = interval_ms(entry.limit, entry.per_seconds)
        slot = self._store.reserve_slot(key, entry.name, earliest_ms=self._now_ms(), interval_ms=interval)
        self._sleep_until(slot, entry.name)
        return slot

    def _wait_for_global_slot(self, method: str, path: str) -> int:
        while True:
            slot = self._store.reserve_slot(
                self._key, "global", earliest_ms=self._now_ms(), interval_ms=self._global_interval_ms
            )
            self._sleep_until(slot, "global")
            # A process the OS did not wake in time would send late, next to the requests of the
            # slots after its own, and crowd IBKR's one-second window: a slot missed by more than
            # half the bucket's margin (50 ms at 50/s and at 10/s) is given up and a fresh one taken.
            late_ms = self._now_ms() - slot  # the same millisecond clock as the endpoint slots
            if late_ms <= self._global_late_ms:
                return slot
            log.debug("woke %d ms after the slot for %s %s; taking a new one", late_ms, method, path)

    def _sleep_until(self, slot_ms: int, bucket: str) -> None:
        wait = slot_ms / 1000 - self._clock()
        if wait > 0:
            self._sleep(wait)
        if self._closed.is_set():
            raise IbkrError(
                f"the client was closed while a request waited for its {bucket} slot; nothing was sent",
                code=IbkrErrorCode.CLIENT_CLOSED,
            )
        if wait > 0.5:
            log.debug("paced %.2f s for the %s bucket", wait, bucket)

    def _now_ms(self) -> int:
        return math.floor(self._clock() * 1000)


def window_margin_ms(limit: float, per_seconds: float) -> int:
    """How late requests may reach IBKR without one too many in a window of a bucket of
    ``limit`` per ``per_seconds``. Requests arriving at most ``d`` after their slots, ``interval``
    apart, put at most ``(window + d) / interval`` into any of IBKR's windows: within the limit
    while ``d <= limit * interval - window``, the 10 % margin of the window (100 ms for 50 and
    for 10 per second, 500 ms for 1 per 5 s)."""
    return math.floor(limit * interval_ms(limit, per_seconds) - per_seconds * 1000)


def lateness_allowed_ms(limit: float, per_seconds: float) -> int:
    """How late a process may wake after its slot and still send: half the window's margin (50 ms
    at 50/s and at 10/s, 250 ms for 1 per 5 s). The other half is for the way from here to IBKR
    (signing, the socket, a loaded host scheduling the process): with the whole margin taken at
    wake-up, eight processes on a loaded two-core host put one request too many into a second of
    the sandbox's strict window and met its penalty box. One rule for every bucket; the global
    one gave a slot up only one interval late, 110 ms at the gateway's 10/s."""
    return window_margin_ms(limit, per_seconds) // 2


def interval_ms(limit: float, per_seconds: float) -> int:
    """Milliseconds between two slots of a bucket that allows ``limit`` per ``per_seconds``."""
    return max(1, math.ceil(per_seconds * 1000 * SAFETY_MARGIN / limit))
