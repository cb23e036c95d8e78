"""Pacing: stay under IBKR's limits as one client, however many processes share the session.

Each request first takes a slot from its per-endpoint bucket (IBKR's table, e.g. 1 per 5 s
for ``/portfolio/accounts``) and then from the global bucket (``rate_limit`` per second). The
buckets live in the session store, so every process sharing a session draws from the same
budget. The arithmetic is pyrate-limiter's GCRA with ``burst=1``: requests are spaced evenly
rather than sent in bursts, because IBKR counts them in sliding one-second windows.

Waiting is ``sleep`` for exactly the time the algorithm reports, never a busy loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ibkr_provider.client.limits import EndpointLimit, endpoint_limit
from ibkr_provider.client.stores import SessionStore

if TYPE_CHECKING:
    from pyrate_limiter import Rate, StateStore

log = logging.getLogger(__name__)

#: Requests are spaced this much wider than the limit. A request that reaches IBKR late
#: bunches up with the ones after it; 10 % of a one-second window lets any request arrive up to
#: 100 ms late without putting limit+1 requests into one window. (3 % left 30 ms, which a busy
#: 2-core worker exceeded in about one run of three; IBKR's penalty box lasts 10-15 minutes,
#: so the 10 % is cheap insurance.)
SAFETY_MARGIN = 1.10


class Pacer:
    """Shared token buckets for one IBKR session (one username)."""

    def __init__(
        self,
        store: SessionStore,
        key: str,
        *,
        global_limit: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if global_limit <= 0:
            raise ValueError("global_limit must be positive")
        self._store = store
        self._key = key
        self._global_limit = global_limit
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, tuple[StateStore, list[Rate]]] = {}

    def _bucket(self, name: str, limit: float, per_seconds: float) -> tuple[StateStore, list[Rate]]:
        from pyrate_limiter import Rate

        cached = self._buckets.get(name)
        if cached is None:
            interval_ms = max(1, round(per_seconds * 1000 * SAFETY_MARGIN / limit))
            cached = (self._store.pacing_store(self._key, name), [Rate(1, interval_ms, burst=1)])
            self._buckets[name] = cached
        return cached

    def _buckets_for(self, method: str, path: str) -> list[tuple[str, float, float]]:
        entry: EndpointLimit | None = endpoint_limit(method, path)
        buckets = [(entry.name, float(entry.limit), entry.per_seconds)] if entry else []
        buckets.append(("global", self._global_limit, 1.0))
        return buckets

    def _take(self, name: str, limit: float, per_seconds: float) -> float:
        """Take one slot, sleeping until one is free; returns the seconds slept."""
        from pyrate_limiter import GCRA

        store, rates = self._bucket(name, limit, per_seconds)
        algorithm = GCRA()
        slept = 0.0
        while True:
            decision = store.check(algorithm, rates, int(self._clock() * 1000), 1)
            if decision.allowed:  # type: ignore[union-attr]
                return slept
            delay = max((decision.retry_after_ms or 1) / 1000.0, 0.001)  # type: ignore[union-attr]
            self._sleep(delay)
            slept += delay

    def acquire(self, method: str, path: str) -> float:
        """Block until a request to ``path`` (below ``/v1/api``) is within every limit.

        Returns the seconds spent waiting.
        """
        waited = 0.0
        for name, limit, per in self._buckets_for(method, path):
            waited += self._take(name, limit, per)
        if waited > 0.5:
            log.debug("paced %s %s for %.2f s", method, path, waited)
        return waited
