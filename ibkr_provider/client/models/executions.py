"""``GET /iserver/account/trades``: executions (fills), typed.

IBKR lists the executions of the last 1 to 7 days; an execution names its order by
``order_ref`` (the cOID the order was placed with), not by IBKR's order id, and carries the
commission IBKR charged for it. One order may fill in several executions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ibkr_provider.client.errors import IbkrResponseError
from ibkr_provider.client.models._json import optional_int, optional_text
from ibkr_provider.client.models.numbers import amount_of, as_text


@dataclass(frozen=True)
class Execution:
    """One fill: ``size`` shares at ``price``, ``commission`` in the account's currency."""

    execution_id: str
    coid: str | None
    account_id: str | None
    conid: int | None
    symbol: str | None
    side: str
    size: Decimal
    price: Decimal
    commission: Decimal | None
    net_amount: Decimal | None
    time: dt.datetime | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, row: Any) -> Execution:
        if not isinstance(row, Mapping) or not row.get("execution_id"):
            raise IbkrResponseError(f"a trades row without execution_id: {str(row)[:200]}")
        size, price = amount_of(row.get("size")), amount_of(row.get("price"))
        if size is None or price is None:
            raise IbkrResponseError(f"trades row {row['execution_id']} has no size or price")
        what = "/iserver/account/trades"
        millis = optional_int(row, "trade_time_r", what)
        return cls(
            execution_id=str(row["execution_id"]),
            coid=optional_text(row, "order_ref", what) or None,
            account_id=optional_text(row, "account", what) or optional_text(row, "accountCode", what),
            conid=optional_int(row, "conid", what),
            symbol=optional_text(row, "symbol", what),
            # IBKR: "B" bought, "S" sold.
            side={"B": "BUY", "S": "SELL"}.get(str(row.get("side") or "").upper()[:1], str(row.get("side"))),
            size=size,
            price=price,
            commission=amount_of(row.get("commission")),
            net_amount=amount_of(row.get("net_amount")),
            time=_utc(millis),
            raw=row,
        )

    def summary(self) -> dict[str, Any]:
        """JSON-ready (amounts as exact strings)."""
        return {
            "execution_id": self.execution_id,
            "coid": self.coid,
            "account_id": self.account_id,
            "conid": self.conid,
            "symbol": self.symbol,
            "side": self.side,
            "size": as_text(self.size),
            "price": as_text(self.price),
            "commission": as_text(self.commission),
            "net_amount": as_text(self.net_amount),
            "time": self.time.isoformat() if self.time else None,
        }


def _utc(millis: int | None) -> dt.datetime | None:
    """IBKR's ``trade_time_r`` (epoch milliseconds) as a UTC time; a value no calendar holds is
    an answer the client cannot read."""
    if not millis:
        return None
    try:
        return dt.datetime.fromtimestamp(millis / 1000, dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise IbkrResponseError(f"/iserver/account/trades: trade_time_r {millis} is not a time") from None
