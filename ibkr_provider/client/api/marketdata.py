"""Contracts and market data: symbol -> conid, and snapshots that wait for their fields.

IBKR's snapshot needs a pre-flight: "A pre-flight request must be made prior to ever receiving
data", and users report needing more than one call (ibind #107). :meth:`MarketData.snapshot`
calls ``/iserver/accounts`` first, then re-polls, within a bound, until every requested field
of every conid is present, and converts IBKR's strings ("1,300", "C168.42") to Decimals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ibkr_provider.client.api.base import IbkrApi
from ibkr_provider.client.errors import (
    IbkrErrorCode,
    IbkrNotFoundError,
    IbkrRequestError,
    IbkrResponseError,
)
from ibkr_provider.client.models.numbers import as_json_number, to_decimal

#: IBKR market-data field codes used by name here (campus "market-data-fields").
LAST, BID, ASK, SYMBOL = "31", "84", "86", "55"
DEFAULT_FIELDS = (LAST, BID, ASK)


@dataclass(frozen=True)
class Quote:
    """One conid's snapshot; ``values`` maps IBKR field codes to numbers."""

    conid: int
    values: Mapping[str, Decimal | None]
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def last(self) -> Decimal | None:
        return self.values.get(LAST)

    @property
    def bid(self) -> Decimal | None:
        return self.values.get(BID)

    @property
    def ask(self) -> Decimal | None:
        return self.values.get(ASK)

    def as_json(self) -> dict[str, float | None]:
        """The values as JSON numbers (for XCom)."""
        return {code: as_json_number(value) for code, value in self.values.items()}


class MarketData:
    """``client.market_data``: contract search and snapshots."""

    def __init__(self, api: IbkrApi, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._api = api
        self._sleep = sleep

    def resolve_conids(self, symbols: Iterable[str], sec_type: str = "STK") -> dict[str, int]:
        """``/iserver/secdef/search``: symbol -> conid of its ``sec_type`` contract."""
        self._api.iserver_preflight()
        resolved: dict[str, int] = {}
        for symbol in symbols:
            wanted = symbol.strip().upper()
            rows = self._api.call(
                "GET", "/iserver/secdef/search", params={"symbol": wanted, "secType": sec_type}
            )
            matches = [
                r for r in rows or [] if isinstance(r, Mapping) and str(r.get("symbol", "")).upper() == wanted
            ]
            if not matches:
                raise IbkrNotFoundError(
                    f"symbol: IBKR knows no {sec_type} contract for symbol {symbol!r}",
                    endpoint="/v1/api/iserver/secdef/search",
                    code=IbkrErrorCode.NOT_FOUND,
                )
            resolved[symbol] = int(matches[0]["conid"])
        return resolved

    def size_increment(self, conid: int) -> Decimal | None:
        """The contract's order size increment from ``POST /iserver/contract/rules`` (1 for whole
        shares, 0.0001 for fractional ones), or None when IBKR's rules do not state it. The
        endpoint's shape is IBKR's Client Portal spec (UNCONFIRMED against production)."""
        self._api.iserver_preflight()
        rules = self._api.call(
            "POST", "/iserver/contract/rules", json_body={"conid": int(conid), "isBuy": True}
        )
        if not isinstance(rules, Mapping):
            raise IbkrResponseError("the contract rules answer is not a JSON object")
        increment = to_decimal(rules.get("sizeIncrement"))
        return increment if increment is not None and increment > 0 else None

    def snapshot(
        self,
        conids: Sequence[int],
        fields: Sequence[str] = DEFAULT_FIELDS,
        *,
        max_polls: int = 6,
        interval: float = 0.5,
    ) -> dict[int, Quote]:
        """Quotes for ``conids`` with every field in ``fields`` present, or an error saying which
        are missing after ``max_polls`` polls (IBKR paces snapshots at 10/s)."""
        if not conids:
            return {}
        self._api.iserver_preflight()  # IBKR's pre-flight for market data
        params = {"conids": ",".join(str(c) for c in conids), "fields": ",".join(fields)}
        missing: dict[int, list[str]] = {}
        for poll in range(max_polls):
            rows = self._api.call("GET", "/iserver/marketdata/snapshot", params=params)
            if not isinstance(rows, list):
                raise IbkrResponseError("the market data snapshot is not a list")
            by_conid = {int(r["conid"]): r for r in rows if isinstance(r, Mapping) and "conid" in r}
            missing = {
                c: [f for f in fields if to_decimal(by_conid.get(c, {}).get(f)) is None] for c in conids
            }
            if not any(missing.values()):
                return {
                    c: Quote(c, {f: to_decimal(by_conid[c].get(f)) for f in fields}, by_conid[c])
                    for c in conids
                }
            if poll + 1 < max_polls:
                self._sleep(interval)
        gaps = {c: f for c, f in missing.items() if f}
        raise IbkrRequestError(
            f"market data incomplete after {max_polls} polls: missing fields {gaps} (no subscription, or the "
            "market is closed and no prior close is available)",
            endpoint="/v1/api/iserver/marketdata/snapshot",
            code=IbkrErrorCode.INCOMPLETE_SNAPSHOT,
        )
