"""The sandbox's price model: seeded prices that move deterministically.

Each instrument's price follows a fixed path through market *ticks*: the seeded (or last set)
price times ``exp(x(tick) - x(anchor tick))``, where ``x`` is a sum of three sine waves whose
phases come from ``(seed, conid)``. The path is therefore the same on every run with the same
seed, stays within ``volatility`` of the seeded price (within twice that of a price set later,
which pins the path at another point of its wave), and can be read at any tick in O(1) (a sandbox
left idle for a day does not replay a day of steps). Ticks advance with wall time
(``tick_seconds``; 0 stops the clock) and by explicit steps from the control plane
(``POST /__sandbox__/market``), which is how tests move the market without sleeping.

Prices are rounded to the cent, IBKR's minimum tick for US stocks above 1 USD.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, field

#: Periods of the three waves in ticks (co-prime, so the path does not repeat for 17 * 89 * 613
#: ticks), and their share of the band.
_WAVES: tuple[tuple[int, float], ...] = ((17, 0.5), (89, 0.3), (613, 0.2))


@functools.lru_cache(maxsize=4096)
def _phases(seed: int, conid: int) -> tuple[float, ...]:
    # A string seed is hashed with SHA-512 by ``random``: stable across processes and versions.
    rng = random.Random(f"{seed}:{conid}")  # noqa: S311 - a reproducible price path, not cryptography
    return tuple(rng.uniform(0.0, 2.0 * math.pi) for _ in _WAVES)


@dataclass(frozen=True)
class PricePath:
    """The deterministic log-price offset of one model (seed and band) at a tick."""

    seed: int
    #: Half the band of the log-price wave (0.02: +/- 2 % around the seeded price); 0 freezes prices.
    volatility: float

    def offset(self, conid: int, tick: int) -> float:
        """``x(tick)`` with ``x(0) == 0``; |x| <= volatility."""
        if self.volatility == 0:
            return 0.0
        total = 0.0
        for (period, share), phase in zip(_WAVES, _phases(self.seed, conid), strict=True):
            wave = math.sin(2.0 * math.pi * tick / period + phase) - math.sin(phase)
            total += share * wave
        return self.volatility * total / 2.0

    def price(self, conid: int, anchor_price: float, anchor_tick: int, tick: int) -> float:
        moved = anchor_price * math.exp(self.offset(conid, tick) - self.offset(conid, anchor_tick))
        return max(round(moved, 2), 0.01)


@dataclass
class MarketClock:
    """Counts ticks: wall time divided by ``tick_seconds`` plus explicit steps.

    Time is accumulated between calls rather than measured from a fixed origin, so changing
    ``tick_seconds`` at run time changes the pace from then on without jumping the market.
    """

    last_wall: float
    elapsed_ticks: float = 0.0
    stepped: int = 0

    def tick(self, now: float, tick_seconds: float) -> int:
        if tick_seconds > 0:
            self.elapsed_ticks += max(now - self.last_wall, 0.0) / tick_seconds
        self.last_wall = now
        return math.floor(self.elapsed_ticks) + self.stepped


@dataclass
class Anchor:
    """Where an instrument's path is pinned: its seeded price at tick 0, or a price set later."""

    price: float
    tick: int


@dataclass
class Market:
    """Anchors per instrument and the tick the current prices were computed for."""

    clock: MarketClock
    anchors: dict[int, Anchor] = field(default_factory=dict)
    current_tick: int = 0
