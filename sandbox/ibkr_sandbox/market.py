"""The sandbox's market over time: prices follow their seeded paths tick by tick (``prices.py``),
scheduled and pinned prices take over from there, and every move fills the resting orders it
crosses. Each function takes the state's lock, so an answer never sees a half-moved market."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

from ibkr_sandbox.prices import Anchor, PricePath

if TYPE_CHECKING:
    from ibkr_sandbox.state import SandboxState


def advance_market(state: SandboxState) -> int:
    """Bring every price to the current tick, apply scheduled moves that are due, and fill the
    resting orders they cross. The control layer calls it before each API request, so every
    answer (quotes, positions, what-if, fills, Flex) sees one consistent market. Returns the tick."""
    with state.lock:
        market = state.market
        tick = market.clock.tick(time.time(), state.settings.price_tick_seconds)
        now = market.clock.last_wall
        due = sorted(move for move in state.price_moves if move[0] <= now)
        if tick == market.current_tick and not due:
            return tick
        state.price_moves[:] = [move for move in state.price_moves if move[0] > now]
        market.current_tick = tick
        path = PricePath(state.settings.price_seed, state.settings.price_volatility)
        for conid, anchor in market.anchors.items():
            _quote(state, conid, path.price(conid, anchor.price, anchor.tick, tick))
        for _, conid, price in due:
            market.anchors[conid] = Anchor(price, tick)
            _quote(state, conid, price)
        _fill_resting_orders(state)
        return tick


def step_market(state: SandboxState, ticks: int) -> int:
    """Move the market ``ticks`` ticks ahead now (tests and demos use it instead of sleeping)."""
    with state.lock:
        state.market.clock.stepped += ticks
        return advance_market(state)


def set_price(state: SandboxState, conid: int, price: float) -> None:
    """Pin an instrument's price now (its path continues from there); resting limit orders it
    crosses fill."""
    with state.lock:
        tick = advance_market(state)
        state.market.anchors[conid] = Anchor(price, tick)
        _quote(state, conid, price)
        _fill_resting_orders(state)


def _quote(state: SandboxState, conid: int, price: float) -> None:
    instrument = state.book.instruments[conid]
    if instrument.last_price != price:
        state.book.instruments[conid] = dataclasses.replace(instrument, last_price=price)


def _fill_resting_orders(state: SandboxState) -> None:
    for order in state.orders.orders.values():
        state.orders.try_fill(state.book, order)
