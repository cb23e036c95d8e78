"""A rebalance plan as data: the orders, IBKR's what-if of each, the account's funds and the
exposure before and after; JSON-ready with every number an exact string (XCom, summary files)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ibkr_provider.client.models.numbers import as_text, fraction
from ibkr_provider.workflows.funds import Exposure, Funds


@dataclass(frozen=True)
class Holding:
    conid: int
    quantity: Decimal
    market_value: Decimal


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
class PlanLine:
    """One order of the plan, how it is sent (``order_type``, ``limit_price``) and IBKR's what-if
    of it (``WhatIf.summary()``)."""

    order: PlannedOrder
    whatif: Mapping[str, Any]
    order_type: str = "MKT"
    limit_price: Decimal | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            **self.order.as_json(),
            "label": self.order.label,
            "order_type": self.order_type,
            "limit_price": as_text(self.limit_price),
            "whatif": dict(self.whatif),
        }


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
