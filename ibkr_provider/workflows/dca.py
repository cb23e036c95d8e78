"""Dollar-cost averaging: fixed cash amounts into symbols with cash-quantity orders.

A run buys only when the account can pay for all of it from cash: the total must fit within both
the cash balance and IBKR's available funds (a DCA never borrows). Otherwise the plan says by how
much it is short, and the DAG skips the run with that line (nothing is ordered).

A plan that can be paid for is previewed with IBKR's what-if per purchase
(:meth:`DcaPlan.previewed`) and has the same JSON shape as a rebalance plan, so the same approval
step shows it and freezes it by hash (:mod:`ibkr_provider.workflows.approval`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ibkr_provider.client.errors import IbkrValidationError
from ibkr_provider.client.fields import decimal
from ibkr_provider.client.models.numbers import as_text
from ibkr_provider.workflows.approval import plan_hash
from ibkr_provider.workflows.funds import Funds
from ibkr_provider.workflows.order_guard import preview

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient


@dataclass(frozen=True)
class Purchase:
    symbol: str
    conid: int
    cash: Decimal
    #: IBKR's last price when planned (the approver sees it; placement checks the move from it).
    price: Decimal | None = None
    #: IBKR's what-if (``WhatIf.summary()``), once previewed.
    whatif: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"BUY {as_text(self.cash)} of {self.symbol}"

    def as_json(self) -> dict[str, Any]:
        """As a rebalance plan's order (:class:`~ibkr_provider.workflows.plan.PlanLine`)."""
        return {
            "symbol": self.symbol,
            "conid": self.conid,
            "side": "BUY",
            "quantity": None,
            "cash_quantity": as_text(self.cash),
            "order_type": "MKT",
            "limit_price": None,
            "price": as_text(self.price),
            "value": as_text(self.cash),
            "label": self.label,
            "whatif": dict(self.whatif),
        }


@dataclass(frozen=True)
class DcaPlan:
    account_id: str
    funds: Funds
    available_funds: Decimal | None
    purchases: tuple[Purchase, ...]
    paper: bool = False

    @property
    def needed(self) -> Decimal:
        return sum((p.cash for p in self.purchases), Decimal(0))

    @property
    def spendable(self) -> Decimal:
        """Cash, and no more than IBKR's available funds when it states them."""
        if self.available_funds is None:
            return self.funds.cash
        return min(self.funds.cash, self.available_funds)

    @property
    def short_by(self) -> Decimal:
        return max(self.needed - self.spendable, Decimal(0))

    def shortfall(self) -> str | None:
        """Why this run cannot buy (the DAG skips with it), or None when the cash covers it."""
        if self.short_by <= 0:
            return None
        cur = self.funds.currency or ""
        return (
            f"skipping DCA for {self.account_id}: {self.needed:,.2f} {cur} needed, {self.spendable:,.2f} "
            f"{cur} spendable (cash {self.funds.cash:,.2f}, available funds {self.available_funds}); short "
            f"by {self.short_by:,.2f} {cur}"
        )

    def previewed(self, client: IbkrClient) -> DcaPlan:
        """The plan with IBKR's what-if of every purchase; one the what-if rejects fails here,
        before anything is placed."""
        from ibkr_provider.client.models.orders import OrderTicket

        done = []
        for p in self.purchases:
            ticket = OrderTicket(conid=p.conid, side="BUY", cash_quantity=p.cash)
            done.append(replace(p, whatif=preview(client, self.account_id, ticket, p.label).summary()))
        return replace(self, purchases=tuple(done))

    def as_json(self) -> dict[str, Any]:
        """The plan as the approval step reads it (numbers as exact strings)."""
        return {
            "account_id": self.account_id,
            "paper": self.paper,
            "currency": self.funds.currency,
            "net_liquidation": as_text(self.funds.net_liquidation),
            "cash": as_text(self.funds.cash),
            "available_funds": as_text(self.available_funds),
            "buys": as_text(self.needed),
            "sells": "0",
            "cash_after": as_text(self.funds.cash - self.needed),
            "orders": [p.as_json() for p in self.purchases],
            "warnings": [
                f"{p.label}: {p.whatif['warning']}" for p in self.purchases if p.whatif.get("warning")
            ],
        }

    def order_kwargs(
        self, *, dry_run: Any, allow_live: Any, allowed_message_ids: Sequence[str] | None
    ) -> list[dict[str, Any]]:
        """One ``IbkrPlaceOrderOperator`` argument set per purchase (for ``expand_kwargs``), the
        cash as an exact string, with the plan's hash and the price it saw (checked against the
        approval at placement); the switches pass through unread (the operator checks them)."""
        digest = plan_hash(self.as_json())
        return [
            {
                "account_id": self.account_id,
                "conid": p.conid,
                "symbol": p.symbol,
                "side": "BUY",
                "cash_quantity": as_text(p.cash),
                "plan_hash": digest,
                "reference_price": as_text(p.price),
                "dry_run": dry_run,
                "allow_live": allow_live,
                "allowed_message_ids": list(allowed_message_ids or []),
            }
            for p in self.purchases
        ]


def check_amounts(amounts: Mapping[str, Any]) -> dict[str, Decimal]:
    clean = {str(s).strip().upper(): decimal(f"amounts[{s}]", v) for s, v in (amounts or {}).items()}
    if not clean or any(v <= 0 for v in clean.values()):
        raise IbkrValidationError("amounts", 'give symbol -> positive cash amount, e.g. {"VTI": 500}')
    return clean


def plan_purchases(client: IbkrClient, account_id: str, amounts: Mapping[str, Any]) -> DcaPlan:
    """The run's purchases, IBKR's last prices and what the account has to pay for them
    (nothing is sent; :meth:`DcaPlan.previewed` adds IBKR's what-if)."""
    wanted = check_amounts(amounts)
    summary = client.account_summary(account_id)
    conids = client.market_data.resolve_conids(wanted)
    quotes = client.market_data.snapshot(list(conids.values()))
    return DcaPlan(
        account_id=account_id,
        funds=Funds.from_summary(summary),
        available_funds=summary.amount("availablefunds"),
        purchases=tuple(
            Purchase(symbol, conids[symbol], cash, getattr(quotes.get(conids[symbol]), "last", None))
            for symbol, cash in wanted.items()
        ),
        paper=client.portfolio.is_paper(account_id),
    )
