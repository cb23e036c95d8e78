"""The order checks are exact: Decimal from the operator's arguments to IBKR's JSON."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from ibkr_provider.client import IbkrOrderRefusedError, IbkrValidationError
from ibkr_provider.client.models.orders import OrderTicket
from ibkr_provider.client.models.whatif import WhatIf
from ibkr_provider.workflows.order_guard import amount, check_notional, refuse_unless_allowed, ticket_of
from ibkr_provider.workflows.risk import AccountRisk, RiskLimits


def _ticket(**overrides: object) -> OrderTicket:
    args: dict[str, object] = {
        "conid": "12340038",
        "side": "buy",
        "quantity": "0.1",
        "cash_quantity": None,
        "order_type": "lmt",
        "limit_price": "290.07",
        "tif": "day",
        "coid": "af-1",
    }
    args.update(overrides)
    return ticket_of(**args)


def test_a_ticket_keeps_the_amounts_a_person_typed_exactly() -> None:
    ticket = _ticket()
    assert ticket.quantity == D("0.1") and ticket.limit_price == D("290.07")
    body = ticket.to_json("DU1234567")
    assert body["quantity"] == 0.1 and body["price"] == 290.07 and repr(body["price"]) == "290.07"
    assert _ticket(quantity=10).to_json("DU1234567")["quantity"] == 10
    assert isinstance(_ticket(quantity="10").to_json("DU1234567")["quantity"], int)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"quantity": "ten"}, "quantity"), ({"limit_price": "-1"}, "limit_price"), ({"conid": True}, "conid")],
)
def test_bad_input_names_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(IbkrValidationError) as excinfo:
        _ticket(**overrides)
    assert excinfo.value.field == field


def test_a_cap_is_exact_to_the_cent() -> None:
    whatif = WhatIf.from_json({"amount": {"amount": "5,000.01 USD"}})
    with pytest.raises(IbkrOrderRefusedError, match=r"over max_notional 5,000\.00"):
        check_notional(_ticket(), whatif, amount("max_notional", 5000))
    check_notional(_ticket(), WhatIf.from_json({"amount": {"amount": "5,000.00 USD"}}), D(5000))
    with pytest.raises(IbkrValidationError, match="must be positive"):
        amount("max_notional", 0)
    assert amount("max_notional", "") is None


def test_a_live_account_needs_allow_live_for_a_real_order() -> None:
    refuse_unless_allowed("U1", live=True, dry_run=True, allow_live=False)
    refuse_unless_allowed("DU1", live=False, dry_run=False, allow_live=False)
    refuse_unless_allowed("U1", live=True, dry_run=False, allow_live=True)
    with pytest.raises(IbkrOrderRefusedError, match="allow_live=True"):
        refuse_unless_allowed("U1", live=True, dry_run=False, allow_live=False)


def test_risk_breaches_name_the_account_and_the_figures() -> None:
    limits = RiskLimits.from_params(
        {"min_cushion": 0.1, "min_excess_liquidity": 10_000, "max_daily_loss": 5000}
    )
    fine = AccountRisk("DU1", D("0.5"), D(20_000), D(-4999))
    assert fine.breaches(limits) == [] and fine.as_json()["daily_pnl"] == "-4999"
    bad = AccountRisk("DU2", D("0.05"), D("9999.5"), D("-5000.01"))
    assert bad.breaches(limits) == [
        "DU2: margin cushion 5.0% is below 10.0%",
        "DU2: excess liquidity 9,999.50 is below 10,000.00",
        "DU2: daily PnL -5,000.01 is a loss beyond 5,000.00",
    ]
    assert AccountRisk("DU3", None, None, None).breaches(limits) == []
