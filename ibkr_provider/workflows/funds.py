"""What an account can pay for: its funds from IBKR's summary, a plan's exposure, and the
check that refuses a plan beyond them before anything is placed.

- the targets plus the holdings they leave alone must fit in 100 % of net liquidation;
- a plan that adds exposure must leave gross exposure (every holding's absolute value over net
  liquidation) within ``max_gross_leverage`` (default 1.0: no borrowing);
- net buys must be covered by cash (plus what ``max_gross_leverage`` allows to borrow), and
  gross buys by IBKR's buying power when IBKR states it.

A new user's "monthly" rebalance once bought 10.29 M on an account with 125,000 cash whose other
273 holdings were 99 % of net liquidation (about 2x gross exposure; IBKR's what-if warned of
nothing): these checks are the provider's, not IBKR's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from ibkr_provider.client.errors import IbkrErrorCode, IbkrOrderRefusedError

if TYPE_CHECKING:
    from ibkr_provider.client.models.portfolio import AccountSummary

#: Rounding slack of the 100 % and leverage checks (weights are rounded to 4 places by people).
TOLERANCE = Decimal("0.0001")


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
