"""The rebalance plan against the sandbox: refused when the account cannot pay for it, and
IBKR's what-if figures and warnings in it, before anything is placed (issue 28)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrClient, IbkrErrorCode, IbkrOrderError, IbkrOrderRefusedError
from ibkr_provider.workflows.rebalance import plan_for

MakeClient = Callable[..., IbkrClient]
DEFAULT_TARGETS = {"VTI": 0.6, "BND": 0.3, "GLD": 0.1}  # the DAG's defaults
#: DU2345678's own six holdings at round weights (cash about 16 % of net liquidation)
FITTING = {"AAPL": 0.1, "MSFT": 0.1, "SPY": 0.35, "VTI": 0.15, "BND": 0.2, "VXUS": 0.1}


def _order_traffic(sandbox: RunningSandbox) -> list[str]:
    return [p for p in sandbox.stats()["paths"] if "/orders" in p or "/reply/" in p]


def test_the_default_targets_on_an_account_full_of_other_holdings_are_refused(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    """The new user's run: DU1234567 holds 273 positions (97 % of net liquidation) and 125,000
    cash; the default targets would have bought about 10 M on top."""
    client = make_client(fresh_sandbox)
    with pytest.raises(IbkrOrderRefusedError) as excinfo:
        plan_for(client, "DU1234567", DEFAULT_TARGETS, drift_band=0.02, min_trade=200)
    refusal = excinfo.value
    assert refusal.code is IbkrErrorCode.PLAN_UNAFFORDABLE and refusal.permanent
    assert "the targets (100.00%) plus the holdings they leave alone (97.25% of net liquidation" in str(
        refusal
    )
    assert "come to 197.25%, over 100 %" in str(refusal)
    assert _order_traffic(fresh_sandbox) == []  # not even a what-if


def test_the_plan_carries_ibkrs_whatif_figures_and_warnings(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    warning = "21/The order's value exceeds 10% of the account's net liquidation."
    fresh_sandbox.configure(whatif_warning=warning)
    plan = plan_for(make_client(fresh_sandbox), "DU2345678", FITTING, drift_band=0.02, min_trade=200)
    data = plan.as_json()
    assert data["paper"] is True and data["currency"] == "USD" and plan.lines
    assert float(data["gross_leverage_after"]) <= 1.0 and float(data["cash_after"]) >= 0
    for line in data["orders"]:
        whatif = line["whatif"]
        assert whatif["commission"] == 1.0 and whatif["warning"] == warning
        assert whatif["initial_margin_change"] > 0 and whatif["maintenance_margin_change"] > 0
        assert whatif["equity_after"] > 0
    assert data["warnings"] == [f"{line.order.label}: {warning}" for line in plan.lines]
    stats = fresh_sandbox.stats()
    assert stats["whatif_requests"] == len(plan.lines) and stats.get("orders_placed", 0) == 0


def test_a_whatif_rejection_refuses_the_plan(fresh_sandbox: RunningSandbox, make_client: MakeClient) -> None:
    fresh_sandbox.inject_fault(
        "/v1/api/iserver/account/DU2345678/orders/whatif",
        "stale",
        method="POST",
        body={"error": "Order rejected - reason: insufficient equity"},
    )
    with pytest.raises(IbkrOrderError, match=r"IBKR's what-if rejected (BUY|SELL) .*insufficient equity"):
        plan_for(make_client(fresh_sandbox), "DU2345678", FITTING, drift_band=0.02, min_trade=200)
    assert [p for p in fresh_sandbox.stats()["paths"] if p.endswith("/orders")] == []


def test_a_fractional_contract_is_planned_in_its_size_increment(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    """IBKR's contract rules state the size increment (POST /iserver/contract/rules): a
    fractional-share contract gets a fractional quantity, the others whole shares."""
    client = make_client(fresh_sandbox)
    vti = client.market_data.resolve_conids(["VTI"])["VTI"]
    fresh_sandbox.configure(size_increments={str(vti): 0.001})
    plan = plan_for(client, "DU2345678", {**FITTING, "VTI": 0.2, "SPY": 0.3}, drift_band=0.02, min_trade=200)
    by_symbol = {line.order.symbol: line.order.quantity for line in plan.lines}
    assert by_symbol["VTI"] != by_symbol["VTI"].to_integral_value()  # a fraction, in steps of 0.001
    assert by_symbol["VTI"] == by_symbol["VTI"].quantize(Decimal("0.001"))
    assert all(q == q.to_integral_value() for s, q in by_symbol.items() if s != "VTI")
