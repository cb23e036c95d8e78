"""What the approver sees and what freezes it: the plan's Markdown, its hash, and the checks at
placement (another plan, a moved price)."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from ibkr_provider.client import IbkrErrorCode, IbkrOrderRefusedError
from ibkr_provider.workflows.approval import (
    approval_body,
    approval_subject,
    check_approved,
    check_price_drift,
    plan_hash,
)


def _plan(**overrides: Any) -> dict[str, Any]:
    order = {
        "symbol": "VTI",
        "conid": 12340038,
        "side": "BUY",
        "quantity": "25",
        "price": "290.07",
        "value": "7251.75",
        "weight_now": "0.1",
        "weight_after": "0.1283",
        "target_weight": "0.15",
        "label": "BUY 25 VTI",
        "order_type": "LMT",
        "limit_price": "287.17",
        "whatif": {
            "commission": 1.0,
            "initial_margin_change": 1812.94,
            "maintenance_margin_change": 1812.94,
            "equity_after": 250000.0,
            "warning": None,
        },
    }
    plan = {
        "account_id": "U3456789",
        "paper": False,
        "currency": "USD",
        "net_liquidation": "256471.79",
        "cash": "40000.00",
        "buys": "7251.75",
        "sells": "0",
        "gross_leverage_before": "0.84",
        "gross_leverage_after": "0.87",
        "cash_after": "32748.25",
        "orders": [order],
        "warnings": ["BUY 25 VTI: 21/The order exceeds 10% of net liquidation."],
    }
    plan.update(overrides)
    return plan


def test_the_body_shows_the_account_every_order_and_ibkrs_whatif() -> None:
    plan = _plan()
    body = approval_body(plan, digest=plan_hash(plan))
    assert "U3456789" in body and "**LIVE** (real money)" in body
    assert "| BUY 25 VTI | LMT | 287.17 | 290.07 | 7,251.75 USD | 10.00% | 12.83% | 15.00% |" in body
    assert "| BUY 25 VTI | 1.00 | 1,812.94 | 1,812.94 | 250,000.00 |" in body
    assert "buys **7,251.75 USD**" in body and "IBKR warns: BUY 25 VTI: 21/" in body
    assert approval_subject(plan) == "Approve 1 IBKR order(s) on U3456789 (LIVE)"
    assert approval_subject(_plan(paper=True)).endswith("(paper)")


def test_the_hash_covers_what_would_be_sent_and_the_price_seen() -> None:
    plan = _plan()
    assert plan_hash(plan) == plan_hash(_plan(cash="1"))  # figures around the orders: same orders
    for field, value in [
        ("quantity", "26"),
        ("limit_price", "287.18"),
        ("price", "290.08"),
        ("side", "SELL"),
    ]:
        changed = _plan(orders=[{**plan["orders"][0], field: value}])
        assert plan_hash(changed) != plan_hash(plan), field
    assert plan_hash(_plan(account_id="U1")) != plan_hash(plan)


def test_only_the_approved_plan_is_placed() -> None:
    check_approved("a" * 64, "a" * 64)
    for approved in (None, "", "None"):
        with pytest.raises(IbkrOrderRefusedError, match="no approval was given"):
            check_approved("a" * 64, approved)
    with pytest.raises(IbkrOrderRefusedError, match="but plan bbbbbbbbbbbbbbbb was approved") as excinfo:
        check_approved("a" * 64, "b" * 64)
    assert excinfo.value.code is IbkrErrorCode.PLAN_CHANGED and excinfo.value.permanent


def test_a_price_that_moved_beyond_the_drift_refuses_the_order() -> None:
    check_price_drift("BUY 25 VTI", D("290.07"), D("292.97"), D("0.01"))  # +0.9998 %
    with pytest.raises(IbkrOrderRefusedError, match=r"BUY 25 VTI moved \+3\.00% since the plan") as excinfo:
        check_price_drift("BUY 25 VTI", D("100"), D("103"), D("0.01"))
    assert excinfo.value.code is IbkrErrorCode.PRICE_MOVED
    with pytest.raises(IbkrOrderRefusedError, match=r"moved -3\.00%"):
        check_price_drift("SELL 5 BND", D("100"), D("97"), D("0.01"))
    with pytest.raises(IbkrOrderRefusedError, match="no current price"):
        check_price_drift("BUY 25 VTI", D("100"), None, D("0.01"))
