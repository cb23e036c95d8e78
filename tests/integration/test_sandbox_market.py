"""The sandbox's price model: seeded prices that move deterministically, seen the same way by
every endpoint, and limit orders that fill when the path crosses them."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from ibkr_sandbox.prices import PricePath
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrClient
from ibkr_provider.client.models.orders import OrderTicket

MakeClient = Callable[..., IbkrClient]
VTI = 12340038  # seeded at 289.00


def test_price_paths_are_reproducible_bounded_and_moving() -> None:
    path = PricePath(seed=0, volatility=0.02)
    series = [path.price(VTI, 289.0, 0, tick) for tick in range(2000)]
    assert series == [PricePath(seed=0, volatility=0.02).price(VTI, 289.0, 0, t) for t in range(2000)]
    assert series[0] == 289.0
    assert all(abs(p / 289.0 - 1) <= 0.02 + 0.0001 for p in series)
    assert len(set(series)) > 200  # it really moves, by cents
    assert max(series) - min(series) > 289.0 * 0.01
    other_seed = [PricePath(seed=1, volatility=0.02).price(VTI, 289.0, 0, t) for t in range(2000)]
    other_conid = [path.price(VTI + 1, 289.0, 0, t) for t in range(2000)]
    assert series != other_seed and series != other_conid
    frozen = PricePath(seed=0, volatility=0.0)
    assert {frozen.price(VTI, 289.0, 0, t) for t in range(100)} == {289.0}
    # A path re-anchored at a set price continues from exactly that price.
    assert path.price(VTI, 300.0, 50, 50) == 300.0


def test_every_endpoint_sees_the_same_moving_market(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox)
    assert client.market_data.snapshot([VTI], interval=0.05)[VTI].last == 289.0
    assert fresh_sandbox.step_market(7) == 7
    moved = fresh_sandbox.market(VTI)["prices"][str(VTI)]
    assert moved != 289.0
    assert moved == PricePath(seed=0, volatility=0.02).price(VTI, 289.0, 0, 7)
    assert client.market_data.snapshot([VTI], interval=0.05)[VTI].last == Decimal(str(moved))
    position = next(p for p in client.all_positions("DU2345678") if p.conid == VTI)
    assert position.market_price == Decimal(str(moved))
    # Determinism over HTTP: the same seed and tick give the same price after a reset.
    fresh_sandbox.reset()
    fresh_sandbox.step_market(7)
    assert fresh_sandbox.market(VTI)["prices"][str(VTI)] == moved


def test_the_market_clock_runs_with_wall_time(fresh_sandbox: RunningSandbox) -> None:
    fresh_sandbox.configure(price_tick_seconds=0.05)
    start = fresh_sandbox.market(VTI)["tick"]
    time.sleep(1.0)
    later = fresh_sandbox.market(VTI)
    assert later["tick"] - start >= 10
    assert later["prices"][str(VTI)] != 289.0
    fresh_sandbox.configure(price_tick_seconds=0)  # the clock stops where it is
    stopped = fresh_sandbox.market(VTI)
    time.sleep(0.3)
    assert fresh_sandbox.market(VTI) == stopped


def test_a_resting_limit_order_fills_when_the_path_crosses_it(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    # Walk the path once to learn its low over 40 ticks, then start again with a limit there.
    lows = []
    for _ in range(40):
        fresh_sandbox.step_market(1)
        lows.append(fresh_sandbox.market(VTI)["prices"][str(VTI)])
    limit = min(lows)
    assert limit < 289.0
    fresh_sandbox.reset()
    client = make_client(fresh_sandbox)
    ticket = OrderTicket(conid=VTI, side="BUY", quantity=3, order_type="LMT", limit_price=limit)
    placed = client.orders.place("DU2345678", ticket)
    assert placed.status == "Submitted"  # 289.00 is above the limit: it rests
    for tick in range(1, 41):
        fresh_sandbox.step_market(1)
        status = client.orders.status(placed.order_id)
        if lows[tick - 1] > limit:
            assert status.status_text == "Submitted", f"filled early at tick {tick}"
        else:
            assert status.status_text == "Filled"
            assert status.average_price == Decimal(str(limit))
            break
    else:
        raise AssertionError("the order never filled")
    assert fresh_sandbox.stats()["orders_placed"] == 1
