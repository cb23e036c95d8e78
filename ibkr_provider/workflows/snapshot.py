"""A portfolio snapshot: every chosen account's summary, ledger and complete positions.

Plain Python (no Airflow), so the same snapshot serves the operator, notebooks and tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ibkr_provider.client.api.portfolio import SUBACCOUNTS_PAGE_SIZE
from ibkr_provider.client.client import IbkrClient
from ibkr_provider.client.errors import IbkrErrorCode, IbkrNotFoundError
from ibkr_provider.client.models.numbers import as_json_number
from ibkr_provider.client.models.portfolio import Account, AccountSummary, Ledger, Position

POSITION_COLUMNS = (
    "account_id",
    "conid",
    "symbol",
    "description",
    "asset_class",
    "currency",
    "quantity",
    "market_price",
    "market_value",
    "average_cost",
    "unrealized_pnl",
    "realized_pnl",
)


@dataclass(frozen=True)
class AccountSnapshot:
    account: Account
    summary: AccountSummary
    ledger: Ledger
    positions: tuple[Position, ...]

    def as_json(self) -> dict[str, Any]:
        """IBKR's own payloads, unchanged, so nothing IBKR sent is lost."""
        return {
            "account": dict(self.account.raw),
            "summary": dict(self.summary.raw),
            "ledger": dict(self.ledger.raw),
            "positions": [dict(p.raw) for p in self.positions],
        }

    def figures(self) -> dict[str, Any]:
        """Small, JSON-serializable headline figures (fit for XCom)."""
        return {
            "net_liquidation": as_json_number(self.summary.net_liquidation),
            "total_cash": as_json_number(self.summary.amount("totalcashvalue")),
            "excess_liquidity": as_json_number(self.summary.amount("excessliquidity")),
            "positions": len(self.positions),
            "market_value": float(sum((p.market_value or Decimal(0) for p in self.positions), Decimal(0))),
        }


def snapshot_accounts(
    client: IbkrClient, account_ids: Iterable[str] | None = None
) -> Iterator[AccountSnapshot]:
    """Snapshot the given accounts, or every account the login can see, one at a time (an
    advisor's thousand sub-accounts never sit in memory together).

    A login that sees a full page of accounts may see more: its accounts are then read page by
    page from ``/portfolio/subaccounts2`` (IBKR's endpoint for more than 100 sub-accounts).
    Raises :class:`IbkrNotFoundError` for an account the login cannot see (before any per-account
    request), and lets any failed page raise: a snapshot is complete or it is an error.
    """
    accounts = client.list_accounts()
    if len(accounts) >= SUBACCOUNTS_PAGE_SIZE:
        accounts = client.portfolio.all_subaccounts()
    visible = {a.account_id: a for a in accounts}
    wanted: Sequence[str] = list(account_ids or []) or list(visible)
    unknown = [a for a in wanted if a not in visible]
    if unknown:
        raise IbkrNotFoundError(
            f"account_ids: {unknown[:20]} are not accounts this login can see ({len(visible)} visible)",
            code=IbkrErrorCode.NOT_FOUND,
        )
    for account_id in wanted:
        yield AccountSnapshot(
            account=visible[account_id],
            summary=client.account_summary(account_id),
            ledger=client.account_ledger(account_id),
            positions=tuple(client.all_positions(account_id)),
        )


def position_rows(snap: AccountSnapshot) -> Iterator[list[Any]]:
    """The CSV rows of one account's positions (:data:`POSITION_COLUMNS`)."""
    for p in snap.positions:
        yield [
            snap.account.account_id,
            p.conid,
            p.symbol,
            p.description,
            p.asset_class,
            p.currency,
            p.quantity,
            p.market_price,
            p.market_value,
            p.average_cost,
            p.unrealized_pnl,
            p.realized_pnl,
        ]
