"""What a person approves before live orders go: the plan as Markdown (Airflow's "Required
actions" page renders it), the hash that freezes it, and the check that the market has not moved
away from what they saw.

The plan is the rebalance plan's JSON (:meth:`~ibkr_provider.workflows.plan.RebalancePlan.as_json`):
the account and whether IBKR reports it paper, every order with its price, value, weights and
IBKR's what-if (commission, initial and maintenance margin change, equity with loan after). The
hash covers what would be sent (account, and per order the contract, side, quantity, order type,
limit price) and the price the approver saw: a plan computed again after the approval, or altered
on the way, does not match it, and nothing is placed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ibkr_provider.client.errors import IbkrErrorCode, IbkrOrderRefusedError
from ibkr_provider.client.models.numbers import to_decimal

#: The fields of an order the hash covers.
HASHED_ORDER_FIELDS = (
    "symbol",
    "conid",
    "side",
    "quantity",
    "cash_quantity",
    "order_type",
    "limit_price",
    "price",
)


def plan_hash(plan: Mapping[str, Any]) -> str:
    """SHA-256 of what the plan would send, in a canonical form (key order and number spelling
    as the plan's JSON states them: amounts are exact strings)."""
    frozen = {
        "account_id": plan.get("account_id"),
        "orders": [{key: order.get(key) for key in HASHED_ORDER_FIELDS} for order in plan.get("orders", [])],
    }
    return hashlib.sha256(json.dumps(frozen, sort_keys=True, default=str).encode()).hexdigest()


def _money(value: Any, currency: str = "") -> str:
    number = to_decimal(value)
    if number is None:
        return "n/a"
    return f"{number:,.2f}{(' ' + currency) if currency else ''}"


def _percent(value: Any) -> str:
    number = to_decimal(value)
    return "n/a" if number is None else f"{number * 100:.2f}%"


def approval_subject(plan: Mapping[str, Any]) -> str:
    kind = "paper" if plan.get("paper") else "LIVE"
    orders = len(plan.get("orders", []))
    return f"Approve {orders} IBKR order(s) on {plan.get('account_id')} ({kind})"


def approval_body(plan: Mapping[str, Any], *, digest: str) -> str:
    """The plan as Markdown: account, every order, totals and IBKR's what-if per order."""
    cur = str(plan.get("currency") or "")
    kind = "paper (IBKR reports it as a paper account)" if plan.get("paper") else "**LIVE** (real money)"
    leverage = (
        f"; gross leverage {plan.get('gross_leverage_before')}x -> {plan.get('gross_leverage_after')}x"
        if plan.get("gross_leverage_after") is not None
        else ""
    )
    lines = [
        f"**Account** {plan.get('account_id')}: {kind}",
        "",
        f"Net liquidation {_money(plan.get('net_liquidation'), cur)}, cash {_money(plan.get('cash'), cur)}; "
        f"buys **{_money(plan.get('buys'), cur)}**, sells **{_money(plan.get('sells'), cur)}**{leverage}; "
        f"cash after {_money(plan.get('cash_after'), cur)}",
        "",
    ]
    orders = list(plan.get("orders", []))
    # A DCA plan buys amounts of cash, with no weights; a rebalance plan has both.
    weights = any(order.get("weight_now") is not None for order in orders)
    extra = " Weight now | After | Target |" if weights else ""
    lines += [
        f"| Order | Type | Limit | Price | Est. value |{extra}",
        "|---|---|---|---|---|" + ("---|---|---|" if weights else ""),
    ]
    for order in orders:
        limit = _money(order.get("limit_price")) if order.get("limit_price") else "-"
        row = (
            f"| {order.get('label')} | {order.get('order_type')} | {limit} | {_money(order.get('price'))} | "
            f"{_money(order.get('value'), cur)} |"
        )
        if weights:
            row += (
                f" {_percent(order.get('weight_now'))} | {_percent(order.get('weight_after'))} | "
                f"{_percent(order.get('target_weight'))} |"
            )
        lines.append(row)
    lines += [
        "",
        "IBKR's what-if per order:",
        "",
        "| Order | Commission | Initial margin change | Maintenance margin change | Equity with loan after |",
        "|---|---|---|---|---|",
    ]
    for order in plan.get("orders", []):
        whatif = order.get("whatif") or {}
        figures = ("commission", "initial_margin_change", "maintenance_margin_change", "equity_after")
        lines.append(f"| {order.get('label')} | " + " | ".join(_money(whatif.get(f)) for f in figures) + " |")
    for warning in plan.get("warnings", []):
        lines.append(f"\n> IBKR warns: {warning}")
    lines += ["", f"Plan hash `{digest[:16]}`: exactly these orders are placed after Approve."]
    return "\n".join(lines)


def check_approved(plan_hash: str | None, approved_plan_hash: str | None) -> None:
    """Refuse to place an order of a plan other than the one approved (a plan computed again
    after the approval, or none approved at all)."""
    approved = (approved_plan_hash or "").strip()
    if not approved or approved == "None":
        raise IbkrOrderRefusedError(
            "approved_plan_hash is empty: no approval was given for this order. Nothing was placed.",
            code=IbkrErrorCode.PLAN_CHANGED,
        )
    if (plan_hash or "").strip() != approved:
        raise IbkrOrderRefusedError(
            f"this order belongs to plan {str(plan_hash)[:16]}, but plan {approved[:16]} was approved. "
            "Nothing was placed; run the DAG again for a new plan and approval.",
            code=IbkrErrorCode.PLAN_CHANGED,
        )


def check_price_drift(symbol: str, seen: Decimal, now: Decimal | None, max_drift: Decimal) -> None:
    """Refuse to place when IBKR's price has moved more than ``max_drift`` (a fraction) from the
    price the approver saw, or when IBKR gives none now (the check cannot be skipped)."""
    if now is None or now <= 0:
        raise IbkrOrderRefusedError(
            f"IBKR gave no current price for {symbol}, so the move since the approval cannot be checked. "
            "Nothing was placed.",
            code=IbkrErrorCode.CAP_UNCHECKABLE,
        )
    move = (now - seen) / seen
    if abs(move) > max_drift:
        raise IbkrOrderRefusedError(
            f"{symbol} moved {move:+.2%} since the plan was approved ({seen} -> {now}), beyond "
            f"max_price_drift {max_drift:.2%}. Nothing was placed; run the DAG again for a new plan.",
            code=IbkrErrorCode.PRICE_MOVED,
        )
