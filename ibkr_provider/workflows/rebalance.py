"""Rebalancing to target weights, in ``Decimal``, within what the account can pay for.

:func:`plan_orders` is the arithmetic: only the symbols in ``targets`` trade (list a holding
with weight 0 to sell it); a symbol trades when its weight drifts more than ``drift_band`` from
its target and the trade is worth at least ``min_trade``; quantities in the contract's size
increment from IBKR's contract rules (whole shares where IBKR states none); a sale never exceeds
the holding.

:func:`~ibkr_provider.workflows.funds.check_affordable` refuses a plan the account cannot pay
for, before anything is placed (holdings above their target but inside ``drift_band`` count too).

:func:`plan_for` gathers what the arithmetic needs from IBKR (summary, every position, prices),
checks the plan, and previews every order with IBKR's what-if (commission, margin change, equity
with loan after, IBKR's warnings), so the figures are known before any order is placed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any

from ibkr_provider.client.errors import (
    IbkrValidationError,
)
from ibkr_provider.client.fields import decimal as number
from ibkr_provider.client.models.numbers import as_text, fraction, money
from ibkr_provider.workflows.approval import plan_hash
from ibkr_provider.workflows.funds import TOLERANCE, Exposure, Funds, check_affordable
from ibkr_provider.workflows.order_guard import preview
from ibkr_provider.workflows.plan import Holding, PlanLine, PlannedOrder, RebalancePlan

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient


def check_targets(targets: Mapping[str, Any]) -> dict[str, Decimal]:
    """Weights between 0 and 1 summing to at most 1 (the rest stays in cash or unlisted holdings)."""
    if not targets:
        raise IbkrValidationError(
            "targets", 'give at least one symbol -> weight, e.g. {"VTI": 0.6, "BND": 0.4}'
        )
    clean: dict[str, Decimal] = {}
    for symbol, weight in targets.items():
        try:
            value = number("targets", weight)
        except IbkrValidationError:
            raise IbkrValidationError(
                "targets", f"weight of {symbol!r} is not a number: {weight!r}"
            ) from None
        if not 0 <= value <= 1:
            raise IbkrValidationError("targets", f"weight of {symbol!r} must be between 0 and 1, got {value}")
        clean[str(symbol).strip().upper()] = value
    if sum(clean.values()) > 1 + TOLERANCE:
        raise IbkrValidationError(
            "targets", f"weights sum to {sum(clean.values())}; they must sum to at most 1"
        )
    return clean


def plan_orders(
    *,
    net_liquidation: Decimal,
    targets: Mapping[str, Decimal],
    conids: Mapping[str, int],
    prices: Mapping[str, Decimal],
    holdings: Mapping[int, Holding],
    drift_band: Decimal,
    min_trade: Decimal,
    increments: Mapping[int, Decimal] | None = None,
) -> list[PlannedOrder]:
    """Orders that bring each listed symbol back to its target weight, each quantity a multiple of
    its contract's size increment (``increments``; whole shares where it is not known)."""
    if net_liquidation <= 0:
        raise IbkrValidationError("account_id", f"net liquidation is {net_liquidation}; nothing to rebalance")
    if not 0 <= drift_band < 1:
        raise IbkrValidationError("drift_band", "must be a fraction between 0 and 1, e.g. 0.02")
    if min_trade < 0:
        raise IbkrValidationError("min_trade", "must not be negative")
    orders: list[PlannedOrder] = []
    for symbol, weight in targets.items():
        conid, price = conids[symbol], prices[symbol]
        if price <= 0:
            raise IbkrValidationError("targets", f"IBKR's price of {symbol} is {price}; cannot size an order")
        held = holdings.get(conid, Holding(conid, Decimal(0), Decimal(0)))
        current = held.market_value / net_liquidation
        if abs(current - weight) <= drift_band:
            continue
        delta = weight * net_liquidation - held.market_value
        step = (increments or {}).get(conid) or Decimal(1)
        quantity = (abs(delta) / price / step).to_integral_value(rounding=ROUND_DOWN) * step
        if delta < 0:
            whole_steps = (max(held.quantity, Decimal(0)) / step).to_integral_value(rounding=ROUND_DOWN)
            quantity = min(quantity, whole_steps * step)
        value = money(quantity * price)
        if quantity <= 0 or value < min_trade:
            continue
        signed = value if delta > 0 else -value
        orders.append(
            PlannedOrder(
                symbol=symbol,
                conid=conid,
                side="BUY" if delta > 0 else "SELL",
                quantity=quantity,
                price=price,
                value=value,
                weight_now=fraction(current),
                weight_after=fraction((held.market_value + signed) / net_liquidation),
                target_weight=weight,
            )
        )
    return orders


def exposure_of(
    orders: Sequence[PlannedOrder], holdings: Mapping[int, Holding], target_conids: set[int], funds: Funds
) -> Exposure:
    """Gross exposure (absolute market values) before and after ``orders``, the weight of the
    holdings the targets leave alone, and cash after."""
    gross_before = sum((abs(h.market_value) for h in holdings.values()), Decimal(0))
    untouched = sum((abs(h.market_value) for c, h in holdings.items() if c not in target_conids), Decimal(0))
    after = {c: h.market_value for c, h in holdings.items()}
    for order in orders:
        signed = order.value if order.side == "BUY" else -order.value
        after[order.conid] = after.get(order.conid, Decimal(0)) + signed
    buys = sum((o.value for o in orders if o.side == "BUY"), Decimal(0))
    sells = sum((o.value for o in orders if o.side == "SELL"), Decimal(0))
    return Exposure(
        untouched_weight=fraction(untouched / funds.net_liquidation),
        buys=buys,
        sells=sells,
        gross_before=gross_before,
        gross_after=sum((abs(v) for v in after.values()), Decimal(0)),
        cash_after=funds.cash - buys + sells,
    )


def plan_for(
    client: IbkrClient,
    account_id: str,
    targets: Mapping[str, Any],
    *,
    drift_band: Any,
    min_trade: Any,
    max_gross_leverage: Any = 1,
    order_type: str = "MKT",
    limit_offset: Any = 0,
) -> RebalancePlan:
    """The checked plan for ``account_id``, every order previewed with IBKR's what-if.

    Raises :class:`IbkrOrderRefusedError` for a plan the account cannot pay for and
    :class:`IbkrOrderError` when IBKR's what-if rejects an order: both before anything is placed.
    """
    from ibkr_provider.client.models.orders import OrderTicket

    wanted = check_targets(targets)
    leverage_cap = number("max_gross_leverage", max_gross_leverage)
    if leverage_cap <= 0:
        raise IbkrValidationError("max_gross_leverage", "must be positive, e.g. 1.0 (no borrowing)")
    funds = Funds.from_summary(client.account_summary(account_id))
    holdings = {
        p.conid: Holding(p.conid, Decimal(str(p.quantity)), p.market_value or Decimal(0))
        for p in client.all_positions(account_id)
    }
    conids = client.market_data.resolve_conids(wanted)
    quotes = client.market_data.snapshot(list(conids.values()))
    prices = {s: quotes[c].last or Decimal(0) for s, c in conids.items()}
    orders = plan_orders(
        net_liquidation=funds.net_liquidation,
        targets=wanted,
        conids=conids,
        prices=prices,
        holdings=holdings,
        drift_band=number("drift_band", drift_band),
        min_trade=number("min_trade", min_trade),
        increments={c: step for c in conids.values() if (step := client.market_data.size_increment(c))},
    )
    exposure = exposure_of(orders, holdings, set(conids.values()), funds)
    check_affordable(account_id, wanted, exposure, funds, leverage_cap)
    lines = []
    for order in orders:
        kind = limit_of(order, order_type, limit_offset)
        ticket = OrderTicket(conid=order.conid, side=order.side, quantity=order.quantity, **kind)
        whatif = preview(client, account_id, ticket, order.label).summary()
        lines.append(PlanLine(order, whatif, kind["order_type"], kind.get("limit_price")))
    return RebalancePlan(
        account_id=account_id,
        paper=client.portfolio.is_paper(account_id),
        funds=funds,
        exposure=exposure,
        lines=tuple(lines),
    )


def limit_of(order: PlannedOrder, order_type: str, limit_offset: Any) -> dict[str, Any]:
    """The ticket's order type and limit: LMT buys ``limit_offset`` below the snapshot price and
    sells that far above it (to the cent)."""
    kind = str(order_type).upper()
    if kind == "MKT":
        return {"order_type": "MKT"}
    if kind != "LMT":
        raise IbkrValidationError("order_type", f"{order_type!r} is not MKT or LMT")
    offset = number("limit_offset", limit_offset)
    factor = 1 - offset if order.side == "BUY" else 1 + offset
    return {"order_type": "LMT", "limit_price": money(order.price * factor)}


def order_kwargs(
    plan: RebalancePlan,
    *,
    order_type: str,
    limit_offset: Any,
    dry_run: Any,
    allow_live: Any,
    allowed_message_ids: Sequence[str] | None,
) -> list[dict[str, Any]]:
    """One ``IbkrPlaceOrderOperator`` argument set per planned order (for ``expand_kwargs``);
    quantities and limit prices as exact strings, with the plan's hash and the price the plan
    saw (checked against the approval at placement). The switches pass through unread: the
    operator accepts only real booleans or the words true/false."""
    digest = plan_hash(plan.as_json())
    orders = []
    for order in plan.orders:
        kind = limit_of(order, order_type, limit_offset)
        orders.append(
            {
                "account_id": plan.account_id,
                "conid": order.conid,
                "symbol": order.symbol,
                "side": order.side,
                "quantity": as_text(order.quantity),
                "order_type": kind["order_type"],
                "limit_price": as_text(kind.get("limit_price")),
                "plan_hash": digest,
                "reference_price": as_text(order.price),
                "dry_run": dry_run,
                "allow_live": allow_live,
                "allowed_message_ids": list(allowed_message_ids or []),
            }
        )
    return orders
