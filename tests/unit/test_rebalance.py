"""Rebalancing arithmetic and the checks of what the account can pay for (pure functions)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from ibkr_provider.client import IbkrErrorCode, IbkrOrderRefusedError, IbkrValidationError
from ibkr_provider.workflows.funds import Funds, check_affordable
from ibkr_provider.workflows.plan import Holding, PlannedOrder
from ibkr_provider.workflows.rebalance import check_targets, exposure_of, plan_orders


def _plan(**overrides: object) -> list[PlannedOrder]:
    args: dict[str, object] = {
        "net_liquidation": D(100_000),
        "targets": {"VTI": D("0.6"), "BND": D("0.4")},
        "conids": {"VTI": 1, "BND": 2},
        "prices": {"VTI": D(250), "BND": D(75)},
        "holdings": {1: Holding(1, D(300), D(75_000)), 2: Holding(2, D(200), D(15_000))},
        "drift_band": D("0.02"),
        "min_trade": D(100),
    }
    args.update(overrides)
    return plan_orders(**args)  # type: ignore[arg-type]


def test_overweight_is_sold_and_underweight_bought_in_whole_shares() -> None:
    sell, buy = sorted(_plan(), key=lambda o: o.side, reverse=True)
    assert (sell.symbol, sell.side, sell.quantity) == ("VTI", "SELL", D(60))  # 75k -> 60k at 250
    assert (buy.symbol, buy.side, buy.quantity) == ("BND", "BUY", D(333))  # 15k -> 40k at 75, floored
    assert buy.weight_now == D("0.15") and buy.target_weight == D("0.4") and buy.weight_after == D("0.3998")
    assert buy.label == "BUY 333 BND" and buy.as_json()["value"] == "24975.00"


def test_quantities_are_multiples_of_the_contracts_size_increment() -> None:
    sell, buy = sorted(_plan(increments={1: D(7), 2: D("0.25")}), key=lambda o: o.side, reverse=True)
    assert (
        buy.quantity == D("333.25") and buy.as_json()["quantity"] == "333.25"
    )  # 25,000 / 75, floored to 0.25
    assert sell.quantity == D(56)  # 60 shares floored to a multiple of 7
    (capped,) = _plan(
        targets={"VTI": D(0)}, holdings={1: Holding(1, D("10.6"), D(80_000))}, increments={1: D(4)}
    )
    assert capped.quantity == D(8)  # never more than the holding, in whole increments


def test_within_band_or_below_min_trade_is_left_alone() -> None:
    assert _plan(drift_band=D("0.3")) == []
    assert len(_plan(min_trade=D(20_000))) == 1  # only the 25k BND buy is big enough


def test_sells_never_exceed_the_holding() -> None:
    (order,) = _plan(targets={"VTI": D(0)}, holdings={1: Holding(1, D(10), D(80_000))})
    assert order.side == "SELL" and order.quantity == 10


@pytest.mark.parametrize(
    "targets", [{}, {"VTI": 1.2}, {"VTI": 0.7, "BND": 0.4}, {"VTI": "lots"}, {"VTI": "nan"}]
)
def test_bad_targets_name_the_field(targets: dict[str, object]) -> None:
    with pytest.raises(IbkrValidationError) as excinfo:
        check_targets(targets)
    assert excinfo.value.field == "targets"


def _check(
    holdings: dict[int, Holding],
    targets: dict[str, D],
    *,
    cash: D,
    net_liquidation: D = D(100_000),
    buying_power: D | None = None,
    leverage: D = D(1),
    drift_band: D = D("0.02"),
) -> None:
    funds = Funds(net_liquidation, cash, buying_power, "USD")
    conids = {"VTI": 1, "BND": 2, "GLD": 3}
    prices = {"VTI": D(250), "BND": D(75), "GLD": D(200)}
    wanted = {s: conids[s] for s in targets}
    orders = plan_orders(
        net_liquidation=net_liquidation,
        targets=targets,
        conids=conids,
        prices=prices,
        holdings=holdings,
        drift_band=drift_band,
        min_trade=D(100),
    )
    check_affordable(
        "DU1", targets, exposure_of(orders, holdings, set(wanted.values()), funds), funds, leverage
    )


def _refusal(*args: object, **kwargs: object) -> str:
    with pytest.raises(IbkrOrderRefusedError) as excinfo:
        _check(*args, **kwargs)  # type: ignore[arg-type]
    assert excinfo.value.code is IbkrErrorCode.PLAN_UNAFFORDABLE and excinfo.value.permanent
    assert "Nothing was placed" in str(excinfo.value)
    return str(excinfo.value)


def test_targets_on_top_of_the_holdings_they_leave_alone_are_refused() -> None:
    """The new user's case: 99 % of net liquidation in other holdings, targets summing to 100 %."""
    other = {100 + i: Holding(100 + i, D(10), D(3_300)) for i in range(30)}  # 99,000 of 100,000
    message = _refusal(other, {"VTI": D("0.6"), "BND": D("0.3"), "GLD": D("0.1")}, cash=D(1_000))
    assert "the targets (100.00%) plus the holdings they leave alone (99.00% of net liquidation " in message
    assert "100,000.00 USD) come to 199.00%, over 100 %" in message


def test_a_buy_that_lifts_gross_exposure_over_the_cap_is_refused() -> None:
    """VTI sits 9 points over target, inside the 10-point band; buying BND up to target would take
    gross exposure to 1.09x."""
    held = {1: Holding(1, D(236), D(59_000)), 2: Holding(2, D(400), D(30_000))}
    message = _refusal(held, {"VTI": D("0.5"), "BND": D("0.5")}, cash=D(11_000), drift_band=D("0.1"))
    assert "over max_gross_leverage 1" in message and "1.09x net liquidation 100,000.00 USD" in message
    _check(held, {"VTI": D("0.5"), "BND": D("0.5")}, cash=D(11_000), drift_band=D("0.1"), leverage=D("1.1"))


def test_net_buys_beyond_cash_are_refused() -> None:
    """Net liquidation counts more than positions and cash (accruals, pending dividends): buying up
    to the target would need cash the account does not have."""
    held = {1: Holding(1, D(200), D(50_000))}
    message = _refusal(held, {"VTI": D(1)}, cash=D(0))
    assert "net buys of 50,000.00 USD exceed the cash of 0.00 USD" in message


def test_buys_beyond_ibkr_buying_power_are_refused() -> None:
    held = {1: Holding(1, D(400), D(100_000))}
    message = _refusal(held, {"VTI": D("0.5"), "BND": D("0.5")}, cash=D(0), buying_power=D(10_000))
    assert "exceed IBKR's buying power of 10,000.00 USD" in message
    _check(held, {"VTI": D("0.5"), "BND": D("0.5")}, cash=D(0), buying_power=D(60_000))
