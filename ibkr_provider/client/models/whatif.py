"""``/iserver/account/{id}/orders/whatif``: what an order would cost and do to the account's
margin, read before anything is placed (the caps and the approval page show it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ibkr_provider.client.errors import IbkrResponseError
from ibkr_provider.client.models.numbers import amount_of, as_json_number


@dataclass(frozen=True)
class WhatIf:
    """``/orders/whatif``: the order's value, commission and margin impact, before placing."""

    amount: Decimal | None
    commission: Decimal | None
    total: Decimal | None
    #: IBKR's "equity" section: equity with loan value after the order.
    equity_after: Decimal | None
    initial_margin_change: Decimal | None
    initial_margin_after: Decimal | None
    maintenance_margin_change: Decimal | None
    maintenance_margin_after: Decimal | None
    warning: str | None
    error: str | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, payload: Any) -> WhatIf:
        if not isinstance(payload, Mapping):
            raise IbkrResponseError("the what-if answer is not a JSON object")

        def part(name: str, key: str) -> Decimal | None:
            section = payload.get(name)
            return amount_of(section.get(key)) if isinstance(section, Mapping) else None

        return cls(
            amount=part("amount", "amount"),
            commission=part("amount", "commission"),
            total=part("amount", "total"),
            equity_after=part("equity", "after"),
            initial_margin_change=part("initial", "change"),
            initial_margin_after=part("initial", "after"),
            maintenance_margin_change=part("maintenance", "change"),
            maintenance_margin_after=part("maintenance", "after"),
            warning=None if payload.get("warn") is None else str(payload["warn"]),
            error=None if payload.get("error") is None else str(payload["error"]),
            raw=payload,
        )

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (for XCom and logs)."""
        return {
            "amount": as_json_number(self.amount),
            "commission": as_json_number(self.commission),
            "total": as_json_number(self.total),
            "equity_after": as_json_number(self.equity_after),
            "initial_margin_change": as_json_number(self.initial_margin_change),
            "initial_margin_after": as_json_number(self.initial_margin_after),
            "maintenance_margin_change": as_json_number(self.maintenance_margin_change),
            "maintenance_margin_after": as_json_number(self.maintenance_margin_after),
            "warning": self.warning,
        }
