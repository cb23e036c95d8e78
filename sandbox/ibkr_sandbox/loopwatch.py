"""How early a request may have arrived: the sandbox's own stalls are never held against a client.

IBKR counts a request against its pacing windows when it reaches IBKR's edge. The sandbox can
only read the time when its event loop gets to the request, and on a loaded host the process
can go unscheduled for longer than pacing's margin: in a full ``make test`` on a two-core
machine, requests that left their clients 123 ms apart were read by the sandbox at the same
instant, 170 ms after the first was sent, and the strict one-second window counted a bunching
the clients never sent (the client's pacer allows 100 ms of lateness in all).

So a request read after a stall counts, for the windows of the requests after it, as having
arrived when the loop last ran: the sandbox puts a client in the penalty box only for a
bunching it is sure of. Without a stall (the loop ran within ``STALL_SECONDS``) the time read
is the arrival, and the window stays strict.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import NamedTuple

#: How often the loop notes that it runs while requests come (100 wake-ups a second, in a
#: sandbox that is being used: a stall that goes unnoticed eats the client's margin).
TICK_SECONDS = 0.01
#: A gap longer than this since the loop last ran is a stall.
STALL_SECONDS = 2 * TICK_SECONDS
#: The watch sleeps when no request came for this long (a sandbox waiting for its next test
#: costs nothing); the first request after that is read strictly and wakes it.
IDLE_SECONDS = 2.0


class Arrival(NamedTuple):
    """When a request came: the sandbox read it at ``read``; it may have arrived as early as
    ``earliest`` (``read`` itself unless the loop had stalled)."""

    earliest: float
    read: float

    @classmethod
    def now(cls) -> Arrival:
        """A request read now, no stall known (a caller outside the middleware)."""
        read = time.time()
        return cls(read, read)


class LoopWatch:
    """Notes when the event loop last ran while requests come in; :meth:`arrival` bounds a
    request's arrival. Used from the event loop's thread only."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last_ran: float | None = None
        self._last_request = 0.0
        self._ticking: asyncio.Task[None] | None = None

    def arrival(self, read_at: float) -> Arrival:
        """A request read at ``read_at``: it may have arrived as early as the loop last ran if
        that was more than ``STALL_SECONDS`` before while the watch was awake, else at
        ``read_at``. Wakes the watch (from a coroutine of the server's event loop)."""
        last = self._last_ran
        earliest = last if last is not None and read_at - last > STALL_SECONDS else read_at
        self._last_request = read_at
        if self._ticking is None or self._ticking.done():
            self._ticking = asyncio.get_running_loop().create_task(self._tick())
        return Arrival(earliest, read_at)

    async def _tick(self) -> None:
        """Note the time every tick until requests stop coming (or the server's shutdown
        cancels it)."""
        while self._clock() - self._last_request < IDLE_SECONDS:
            self._last_ran = self._clock()
            await asyncio.sleep(TICK_SECONDS)
        self._last_ran = None
