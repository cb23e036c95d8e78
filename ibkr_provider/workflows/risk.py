"""The risk monitor's check: every account's margin cushion, excess liquidity and daily PnL
against the limits, with one readable line per breach (the DAG fails with them, so Airflow's
failure alerts say what is wrong). Figures are exact strings in XCom, like every amount."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ibkr_provider.client import fields
from ibkr_provider.client.models.numbers import as_text

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient
    from ibkr_provider.client.models.portfolio import PnlRow, Position

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RiskLimits:
    """``min_cushion`` (excess liquidity over net liquidation, 0-1), ``min_excess_liquidity`` and
    ``max_daily_loss`` (a positive amount: a daily PnL below its negative is a breach)."""

    min_cushion: Decimal
    min_excess_liquidity: Decimal
    max_daily_loss: Decimal

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RiskLimits:
        return cls(*(fields.decimal(name, params[name]) for name in cls.__dataclass_fields__))


@dataclass(frozen=True)
class AccountRisk:
    account_id: str
    cushion: Decimal | None
    excess_liquidity: Decimal | None
    daily_pnl: Decimal | None

    def breaches(self, limits: RiskLimits) -> list[str]:
        """One line per limit this account breaches (a figure IBKR did not give breaches none)."""
        found = []
        if self.cushion is not None and self.cushion < limits.min_cushion:
            found.append(f"margin cushion {self.cushion:.1%} is below {limits.min_cushion:.1%}")
        if self.excess_liquidity is not None and self.excess_liquidity < limits.min_excess_liquidity:
            found.append(
                f"excess liquidity {self.excess_liquidity:,.2f} is below {limits.min_excess_liquidity:,.2f}"
            )
        if self.daily_pnl is not None and self.daily_pnl < -limits.max_daily_loss:
            found.append(f"daily PnL {self.daily_pnl:,.2f} is a loss beyond {limits.max_daily_loss:,.2f}")
        return [f"{self.account_id}: {line}" for line in found]

    def as_json(self) -> dict[str, str | None]:
        return {
            "cushion": as_text(self.cushion),
            "excess_liquidity": as_text(self.excess_liquidity),
            "daily_pnl": as_text(self.daily_pnl),
        }


def account_risks(client: IbkrClient, accounts: Sequence[str] | None) -> list[AccountRisk]:
    """The figures of ``accounts`` (every account of the login when none are named)."""
    named = [fields.account_id(a, "accounts") for a in accounts or []]
    pnl = client.pnl()
    return [
        _risk_of(client, account, pnl) for account in named or [a.account_id for a in client.list_accounts()]
    ]


def _risk_of(client: IbkrClient, account: str, pnl: Mapping[str, PnlRow]) -> AccountRisk:
    summary = client.account_summary(account)
    risk = AccountRisk(
        account,
        summary.amount("cushion"),
        summary.amount("excessliquidity"),
        pnl[account].daily_pnl if account in pnl else None,
    )
    log.info(
        "%s: cushion %s, excess liquidity %s, daily PnL %s",
        account,
        risk.cushion,
        risk.excess_liquidity,
        risk.daily_pnl,
    )
    return risk


@dataclass(frozen=True)
class DrawdownReport:
    """What a person wants to read when an account's day turns bad: its risk figures and the
    positions that weigh most (``ibkr_drawdown_guard``)."""

    risk: AccountRisk
    net_liquidation: Decimal | None
    largest: tuple[Position, ...]

    def text(self) -> str:
        risk = self.risk
        lines = [
            f"{risk.account_id}: daily PnL {_amount(risk.daily_pnl)}, net liquidation "
            f"{_amount(self.net_liquidation)}",
            f"margin cushion {'n/a' if risk.cushion is None else f'{risk.cushion:.1%}'}, "
            f"excess liquidity {_amount(risk.excess_liquidity)}",
            f"largest {len(self.largest)} position(s):",
        ]
        lines += [
            f"  {p.symbol or p.conid}: {p.quantity:,g} at {_amount(p.market_price)} = "
            f"{_amount(p.market_value)} {p.currency or ''} (unrealised {_amount(p.unrealized_pnl)})"
            for p in self.largest
        ]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "account_id": self.risk.account_id,
            **self.risk.as_json(),
            "net_liquidation": as_text(self.net_liquidation),
            "largest": [
                {"symbol": p.symbol, "quantity": p.quantity, "market_value": as_text(p.market_value)}
                for p in self.largest
            ],
        }


def _amount(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def drawdown_report(client: IbkrClient, account_id: str, *, top: int = 5) -> DrawdownReport:
    """``account_id``'s risk figures, net liquidation and ``top`` largest positions by value."""
    account_id = fields.account_id(account_id, "account_id")
    pnl = client.pnl()  # once: IBKR allows 1 PnL request per 5 s
    risk = _risk_of(client, account_id, pnl)
    positions = sorted(
        client.all_positions(account_id), key=lambda p: abs(p.market_value or Decimal(0)), reverse=True
    )
    row = pnl.get(account_id)
    return DrawdownReport(risk, row.net_liquidation if row else None, tuple(positions[:top]))
