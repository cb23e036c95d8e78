"""Rebalancing arithmetic: from net liquidation, holdings and prices to orders.

Only the symbols in ``targets`` are traded; holdings not listed are left alone (list them with
weight 0 to sell them). A symbol trades when its weight drifts more than ``drift_band`` from
its target and the trade is worth at least ``min_trade``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from ibkr_provider.client.errors import IbkrValidationError


@dataclass(frozen=True)
class Holding:
    conid: int
    quantity: float
    market_value: float


@dataclass(frozen=True)
class PlannedOrder:
    symbol: str
    conid: int
    side: str
    quantity: float
    price: float
    value: float
    current_weight: float
    target_weight: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def check_targets(targets: Mapping[str, float]) -> dict[str, float]:
    """Weights between 0 and 1 summing to at most 1 (the rest stays in cash or unlisted holdings)."""
    if not targets:
        raise IbkrValidationError(
            "targets", 'give at least one symbol -> weight, e.g. {"VTI": 0.6, "BND": 0.4}'
        )
    clean: dict[str, float] = {}
    for symbol, weight in targets.items():
        try:
            value = float(weight)
        except (TypeError, ValueError):
            raise IbkrValidationError(
                "targets", f"weight of {symbol!r} is not a number: {weight!r}"
            ) from None
        if not 0 <= value <= 1:
            raise IbkrValidationError("targets", f"weight of {symbol!r} must be between 0 and 1, got {value}")
        clean[str(symbol).upper()] = value
    if sum(clean.values()) > 1.0 + 1e-9:
        raise IbkrValidationError(
            "targets", f"weights sum to {sum(clean.values()):.4f}; they must sum to at most 1"
        )
    return clean


def plan_rebalance(
    *,
    net_liquidation: float,
    targets: Mapping[str, float],
    conids: Mapping[str, int],
    prices: Mapping[str, float],
    holdings: Mapping[int, Holding],
    drift_band: float,
    min_trade: float,
) -> list[PlannedOrder]:
    """Whole-share orders that bring each listed symbol back to its target weight."""
    if net_liquidation <= 0:
        raise IbkrValidationError("account_id", f"net liquidation is {net_liquidation}; nothing to rebalance")
    if not 0 <= drift_band < 1:
        raise IbkrValidationError("drift_band", "must be a fraction between 0 and 1, e.g. 0.02")
    if min_trade < 0:
        raise IbkrValidationError("min_trade", "must not be negative")
    orders: list[PlannedOrder] = []
    for symbol, weight in check_targets(targets).items():
        conid, price = conids[symbol], prices[symbol]
        held = holdings.get(conid, Holding(conid, 0.0, 0.0))
        current = held.market_value / net_liquidation
        if abs(current - weight) <= drift_band:
            continue
        delta = weight * net_liquidation - held.market_value
        quantity = float(math.floor(abs(delta) / price))
        if delta < 0:
            quantity = min(quantity, max(held.quantity, 0.0))
        value = quantity * price
        if quantity <= 0 or value < min_trade:
            continue
        orders.append(
            PlannedOrder(
                symbol,
                conid,
                "BUY" if delta > 0 else "SELL",
                quantity,
                price,
                round(value, 2),
                round(current, 4),
                weight,
            )
        )
    return orders
