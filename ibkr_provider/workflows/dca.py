"""Dollar-cost averaging: fixed cash amounts into symbols with cash-quantity orders.

A run buys only when the account can pay for all of it from cash: the total must fit within both
the cash balance and IBKR's available funds (a DCA never borrows). Otherwise the plan says by how
much it is short, and the DAG skips the run with that line (nothing is ordered).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ibkr_provider.client.errors import IbkrValidationError
from ibkr_provider.client.fields import decimal
from ibkr_provider.client.models.numbers import as_text
from ibkr_provider.workflows.funds import Funds

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient


@dataclass(frozen=True)
class Purchase:
    symbol: str
    conid: int
    cash: Decimal

    @property
    def label(self) -> str:
        return f"BUY {as_text(self.cash)} of {self.symbol}"


@dataclass(frozen=True)
class DcaPlan:
    account_id: str
    funds: Funds
    available_funds: Decimal | None
    purchases: tuple[Purchase, ...]

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

    def order_kwargs(
        self, *, dry_run: Any, allow_live: Any, allowed_message_ids: Sequence[str] | None
    ) -> list[dict[str, Any]]:
        """One ``IbkrPlaceOrderOperator`` argument set per purchase (for ``expand_kwargs``), the
        cash as an exact string; the switches pass through unread (the operator checks them)."""
        return [
            {
                "account_id": self.account_id,
                "conid": p.conid,
                "symbol": p.symbol,
                "side": "BUY",
                "cash_quantity": as_text(p.cash),
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
    """The run's purchases and what the account has to pay for them (nothing is sent)."""
    wanted = check_amounts(amounts)
    summary = client.account_summary(account_id)
    conids = client.market_data.resolve_conids(wanted)
    return DcaPlan(
        account_id=account_id,
        funds=Funds.from_summary(summary),
        available_funds=summary.amount("availablefunds"),
        purchases=tuple(Purchase(symbol, conids[symbol], cash) for symbol, cash in wanted.items()),
    )
