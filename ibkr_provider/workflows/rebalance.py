"""Rebalancing to target weights, in ``Decimal``, within what the account can pay for.

:func:`plan_orders` is the arithmetic: only the symbols in ``targets`` trade (list a holding
with weight 0 to sell it); a symbol trades when its weight drifts more than ``drift_band`` from
its target and the trade is worth at least ``min_trade``; whole shares; a sale never exceeds the
holding.

:func:`check_affordable` refuses a plan the account cannot pay for, before anything is placed
(a new user's "monthly" rebalance once bought 10.29 M on an account with 125,000 cash whose other
273 holdings were 99 % of net liquidation: about 2x gross exposure, and IBKR's what-if warned of
nothing):

- the targets plus the holdings they leave alone must fit in 100 % of net liquidation;
- a plan that adds exposure must leave gross exposure (every holding's absolute value over net
  liquidation) within ``max_gross_leverage`` (default 1.0: no borrowing); holdings above their
  target but inside ``drift_band`` count too;
- net buys must be covered by cash (plus what ``max_gross_leverage`` allows to borrow), and
  gross buys by IBKR's buying power when IBKR states it.

:func:`plan_for` gathers what the arithmetic needs from IBKR (summary, every position, prices),
checks the plan, and previews every order with IBKR's what-if (commission, margin change, equity
with loan after, IBKR's warnings), so the figures are known before any order is placed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any

from ibkr_provider.client.errors import (
    IbkrErrorCode,
    IbkrOrderError,
    IbkrOrderRefusedError,
    IbkrValidationError,
)
from ibkr_provider.client.fields import decimal as number
from ibkr_provider.client.models.numbers import as_text, fraction, money

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient
    from ibkr_provider.client.models.portfolio import AccountSummary

log = logging.getLogger(__name__)

#: Rounding slack of the 100 % and leverage checks (weights are rounded to 4 places by people).
TOLERANCE = Decimal("0.0001")


@dataclass(frozen=True)
class Holding:
    conid: int
    quantity: Decimal
    market_value: Decimal


@dataclass(frozen=True)
class Funds:
    """What the account has, from ``/portfolio/{id}/summary`` (IBKR's metric names)."""

    net_liquidation: Decimal
    cash: Decimal
    buying_power: Decimal | None
    currency: str | None

    @classmethod
    def from_summary(cls, summary: AccountSummary) -> Funds:
        """Refuses an answer without net liquidation or cash: a plan must never be checked
        against a figure IBKR did not give."""
        net_liq, cash = summary.net_liquidation, summary.amount("totalcashvalue")
        if net_liq is None or cash is None:
            missing = "netliquidation" if net_liq is None else "totalcashvalue"
            raise IbkrOrderRefusedError(
                f"IBKR's account summary of {summary.account_id} has no {missing}, so what the account can "
                "pay for cannot be checked. Nothing was placed.",
                code=IbkrErrorCode.CAP_UNCHECKABLE,
            )
        metric = summary.metrics.get("netliquidation")
        return cls(net_liq, cash, summary.amount("buyingpower"), metric.currency if metric else None)


@dataclass(frozen=True)
class PlannedOrder:
    symbol: str
    conid: int
    side: str
    quantity: Decimal
    price: Decimal
    value: Decimal
    weight_now: Decimal
    weight_after: Decimal
    target_weight: Decimal

    def as_json(self) -> dict[str, Any]:
        """JSON-ready (XCom, summary files): numbers as exact strings."""
        return {
            "symbol": self.symbol,
            "conid": self.conid,
            "side": self.side,
            "quantity": as_text(self.quantity),
            "price": as_text(self.price),
            "value": as_text(self.value),
            "weight_now": as_text(self.weight_now),
            "weight_after": as_text(self.weight_after),
            "target_weight": as_text(self.target_weight),
        }

    @property
    def label(self) -> str:
        """What the order does, as a person says it: ``BUY 25 AAPL``."""
        return f"{self.side} {as_text(self.quantity)} {self.symbol}"


@dataclass(frozen=True)
class Exposure:
    """The account before and after a plan, as fractions of net liquidation."""

    untouched_weight: Decimal
    buys: Decimal
    sells: Decimal
    gross_before: Decimal
    gross_after: Decimal
    cash_after: Decimal

    @property
    def net_buys(self) -> Decimal:
        return self.buys - self.sells


@dataclass(frozen=True)
class PlanLine:
    """One order of the plan and IBKR's what-if of it (``WhatIf.summary()``)."""

    order: PlannedOrder
    whatif: Mapping[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {**self.order.as_json(), "label": self.order.label, "whatif": dict(self.whatif)}


@dataclass(frozen=True)
class RebalancePlan:
    account_id: str
    paper: bool
    funds: Funds
    exposure: Exposure
    lines: tuple[PlanLine, ...]

    @property
    def orders(self) -> tuple[PlannedOrder, ...]:
        return tuple(line.order for line in self.lines)

    @property
    def warnings(self) -> list[str]:
        """IBKR's what-if warnings, each with the order it is about."""
        return [
            f"{line.order.label}: {line.whatif['warning']}"
            for line in self.lines
            if line.whatif.get("warning")
        ]

    def as_json(self) -> dict[str, Any]:
        funds, exposure = self.funds, self.exposure
        return {
            "account_id": self.account_id,
            "paper": self.paper,
            "currency": funds.currency,
            "net_liquidation": as_text(funds.net_liquidation),
            "cash": as_text(funds.cash),
            "buying_power": as_text(funds.buying_power),
            "untouched_weight": as_text(exposure.untouched_weight),
            "buys": as_text(exposure.buys),
            "sells": as_text(exposure.sells),
            "gross_leverage_before": as_text(fraction(exposure.gross_before / funds.net_liquidation)),
            "gross_leverage_after": as_text(fraction(exposure.gross_after / funds.net_liquidation)),
            "cash_after": as_text(exposure.cash_after),
            "orders": [line.as_json() for line in self.lines],
            "warnings": self.warnings,
        }


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
) -> list[PlannedOrder]:
    """Whole-share orders that bring each listed symbol back to its target weight."""
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
        quantity = (abs(delta) / price).to_integral_value(rounding=ROUND_DOWN)
        if delta < 0:
            quantity = min(quantity, max(held.quantity, Decimal(0)))
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


def _refuse(account_id: str, what: str) -> IbkrOrderRefusedError:
    return IbkrOrderRefusedError(
        f"the rebalance plan for {account_id} is refused: {what}. Nothing was placed.",
        code=IbkrErrorCode.PLAN_UNAFFORDABLE,
    )


def check_affordable(
    account_id: str,
    targets: Mapping[str, Decimal],
    exposure: Exposure,
    funds: Funds,
    max_gross_leverage: Decimal,
) -> None:
    """Refuse what the account cannot pay for (see the module docstring), naming the figures."""
    nl, cur = funds.net_liquidation, f" {funds.currency}" if funds.currency else ""
    wanted = sum(targets.values(), Decimal(0))
    if wanted + exposure.untouched_weight > 1 + TOLERANCE:
        raise _refuse(
            account_id,
            f"the targets ({wanted:.2%}) plus the holdings they leave alone "
            f"({exposure.untouched_weight:.2%} of net liquidation {nl:,.2f}{cur}) come to "
            f"{wanted + exposure.untouched_weight:.2%}, over 100 %; "
            "list the other holdings with weight 0 to sell them, or lower the targets",
        )
    leverage = exposure.gross_after / nl
    if leverage > max_gross_leverage + TOLERANCE and exposure.gross_after > exposure.gross_before:
        raise _refuse(
            account_id,
            f"gross exposure after the plan would be {exposure.gross_after:,.2f}{cur}, {leverage:.2f}x net "
            f"liquidation {nl:,.2f}{cur}, over max_gross_leverage {max_gross_leverage}",
        )
    borrowable = (max_gross_leverage - 1) * nl
    if exposure.net_buys > funds.cash + max(borrowable, Decimal(0)) + TOLERANCE:
        raise _refuse(
            account_id,
            f"net buys of {exposure.net_buys:,.2f}{cur} exceed the cash of {funds.cash:,.2f}{cur}"
            + (f" plus {borrowable:,.2f}{cur} max_gross_leverage allows to borrow" if borrowable > 0 else ""),
        )
    if funds.buying_power is not None and exposure.buys > funds.buying_power + TOLERANCE:
        raise _refuse(
            account_id,
            f"buys of {exposure.buys:,.2f}{cur} exceed IBKR's buying power of {funds.buying_power:,.2f}{cur}",
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
    )
    exposure = exposure_of(orders, holdings, set(conids.values()), funds)
    check_affordable(account_id, wanted, exposure, funds, leverage_cap)
    lines = []
    for order in orders:
        ticket = OrderTicket(
            conid=order.conid,
            side=order.side,
            quantity=float(order.quantity),
            **limit_of(order, order_type, limit_offset),
        )
        whatif = client.orders.whatif(account_id, ticket)
        if whatif.error:
            raise IbkrOrderError(
                f"IBKR's what-if rejected {order.label}: {whatif.error}. Nothing was placed.",
                ibkr_error=whatif.error,
                code=IbkrErrorCode.REJECTED,
            )
        lines.append(PlanLine(order, whatif.summary()))
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
    return {"order_type": "LMT", "limit_price": float(money(order.price * factor))}


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
    quantities as exact strings. The switches pass through unread: the operator accepts only
    real booleans or the words true/false."""
    return [
        {
            "account_id": plan.account_id,
            "conid": order.conid,
            "symbol": order.symbol,
            "side": order.side,
            "quantity": as_text(order.quantity),
            "limit_price": None,
            **limit_of(order, order_type, limit_offset),
            "dry_run": dry_run,
            "allow_live": allow_live,
            "allowed_message_ids": list(allowed_message_ids or []),
        }
        for order in plan.orders
    ]


def log_plan(plan: RebalancePlan) -> None:
    """The plan in the task log, figures with their currency and thousands separators."""
    funds, exposure, cur = plan.funds, plan.exposure, plan.funds.currency or ""
    nl = funds.net_liquidation
    log.info(
        "Rebalance plan for %s (%s): net liquidation %s %s, cash %s %s; %d order(s); buys %s, sells %s; "
        "gross exposure %.2fx -> %.2fx; untouched holdings %.2f%%",
        plan.account_id,
        "paper" if plan.paper else "live",
        f"{nl:,.2f}",
        cur,
        f"{funds.cash:,.2f}",
        cur,
        len(plan.lines),
        f"{exposure.buys:,.2f}",
        f"{exposure.sells:,.2f}",
        exposure.gross_before / nl,
        exposure.gross_after / nl,
        exposure.untouched_weight * 100,
    )
    for line in plan.lines:
        o, w = line.order, line.whatif
        log.info(
            "  %-16s @ %10s = %14s %s  weight %6.2f%% -> %6.2f%% (target %.2f%%); what-if: commission %s, "
            "initial margin %s, maintenance margin %s, equity with loan after %s%s",
            o.label,
            f"{o.price:,.2f}",
            f"{o.value:,.2f}",
            cur,
            o.weight_now * 100,
            o.weight_after * 100,
            o.target_weight * 100,
            w.get("commission"),
            w.get("initial_margin_change"),
            w.get("maintenance_margin_change"),
            w.get("equity_after"),
            f"; IBKR warns: {w['warning']}" if w.get("warning") else "",
        )
