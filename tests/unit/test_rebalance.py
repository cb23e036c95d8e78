"""Rebalancing arithmetic (pure functions: no server involved)."""

from __future__ import annotations

import pytest

from ibkr_provider.client import IbkrValidationError
from ibkr_provider.client.rebalance import Holding, check_targets, plan_rebalance


def _plan(**overrides: object) -> list[object]:
    args: dict[str, object] = {
        "net_liquidation": 100_000.0,
        "targets": {"VTI": 0.6, "BND": 0.4},
        "conids": {"VTI": 1, "BND": 2},
        "prices": {"VTI": 250.0, "BND": 75.0},
        "holdings": {1: Holding(1, 300, 75_000.0), 2: Holding(2, 200, 15_000.0)},
        "drift_band": 0.02,
        "min_trade": 100.0,
    }
    args.update(overrides)
    return plan_rebalance(**args)  # type: ignore[arg-type]


def test_overweight_is_sold_and_underweight_bought_in_whole_shares() -> None:
    sell, buy = sorted(_plan(), key=lambda o: o.side, reverse=True)  # type: ignore[attr-defined]
    assert (sell.symbol, sell.side, sell.quantity) == ("VTI", "SELL", 60.0)  # 75k -> 60k at 250
    assert (buy.symbol, buy.side, buy.quantity) == ("BND", "BUY", 333.0)  # 15k -> 40k at 75, floored
    assert buy.current_weight == 0.15 and buy.target_weight == 0.4


def test_within_band_or_below_min_trade_is_left_alone() -> None:
    assert _plan(drift_band=0.3) == []
    assert len(_plan(min_trade=20_000.0)) == 1  # only the 25k BND buy is big enough


def test_sells_never_exceed_the_holding() -> None:
    (order,) = _plan(targets={"VTI": 0.0}, holdings={1: Holding(1, 10, 80_000.0)})
    assert order.side == "SELL" and order.quantity == 10


@pytest.mark.parametrize("targets", [{}, {"VTI": 1.2}, {"VTI": 0.7, "BND": 0.4}, {"VTI": "lots"}])
def test_bad_targets_name_the_field(targets: dict[str, object]) -> None:
    with pytest.raises(IbkrValidationError) as excinfo:
        check_targets(targets)  # type: ignore[arg-type]
    assert excinfo.value.field == "targets"
