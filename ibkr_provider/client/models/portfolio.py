"""Typed, frozen results of the portfolio endpoints: accounts, summary, ledger, positions, PnL.

Money and prices are :class:`~decimal.Decimal` (read by :mod:`ibkr_provider.client.models.numbers`);
quantities are floats. Each model keeps the decoded payload in ``raw``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ibkr_provider.client.errors import IbkrResponseError
from ibkr_provider.client.fields import ACCOUNT_ID
from ibkr_provider.client.models._json import Json, optional_int, optional_text, require_mapping
from ibkr_provider.client.models.numbers import amount_of, quantity_of


@dataclass(frozen=True)
class Account:
    """One entry of ``GET /portfolio/accounts``."""

    account_id: str
    display_name: str | None
    currency: str | None
    type: str | None
    trading_type: str | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, payload: Json) -> Account:
        data = require_mapping(payload, "an account")
        what = "/portfolio/accounts"
        account_id = data.get("accountId") or data.get("id")
        if not isinstance(account_id, str) or not ACCOUNT_ID.fullmatch(account_id):
            raise IbkrResponseError(f"{what} returned an account without an account id ('accountId')")
        return cls(
            account_id=account_id,
            display_name=optional_text(data, "displayName", what),
            currency=optional_text(data, "currency", what),
            type=optional_text(data, "type", what),
            trading_type=optional_text(data, "tradingType", what),
            raw=data,
        )


@dataclass(frozen=True)
class SummaryValue:
    """One metric of ``/portfolio/{id}/summary``: ``amount`` for numbers, ``value`` for text."""

    amount: Decimal | None
    currency: str | None
    value: str | None
    timestamp_ms: int | None


@dataclass(frozen=True)
class AccountSummary:
    """``GET /portfolio/{accountId}/summary`` keyed by IBKR's lower-case metric names."""

    account_id: str
    metrics: Mapping[str, SummaryValue]
    raw: Mapping[str, Any] = field(repr=False)

    def amount(self, name: str) -> Decimal | None:
        """The numeric amount of a metric such as ``netliquidation`` or ``cushion``."""
        metric = self.metrics.get(name)
        return metric.amount if metric else None

    @property
    def net_liquidation(self) -> Decimal | None:
        return self.amount("netliquidation")

    @classmethod
    def from_json(cls, account_id: str, payload: Json) -> AccountSummary:
        what = f"/portfolio/{account_id}/summary"
        data = require_mapping(payload, what)
        metrics: dict[str, SummaryValue] = {}
        for name, item in data.items():
            if isinstance(item, Mapping):
                value = item.get("value")
                metrics[name] = SummaryValue(
                    amount=None if item.get("isNull") else amount_of(item.get("amount")),
                    currency=optional_text(item, "currency", what),
                    # a text metric; IBKR sends numbers and flags there too: kept as their text
                    value=None if value is None else str(value),
                    timestamp_ms=optional_int(item, "timestamp", what),
                )
        if "netliquidation" not in metrics:  # every account's summary has it: this is no summary
            raise IbkrResponseError(f"{what} has no netliquidation: not an account summary")
        return cls(account_id=account_id, metrics=metrics, raw=data)


@dataclass(frozen=True)
class PnlRow:
    """One account of ``/iserver/account/pnl/partitioned`` (key ``<accountId>.Core``)."""

    account_id: str
    daily_pnl: Decimal | None
    net_liquidation: Decimal | None
    unrealized_pnl: Decimal | None
    excess_liquidity: Decimal | None
    market_value: Decimal | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, payload: Json) -> dict[str, PnlRow]:
        data = require_mapping(payload, "/iserver/account/pnl/partitioned")
        if "upnl" not in data:
            raise IbkrResponseError("the PnL answer has no 'upnl' rows")
        return cls.rows_of(require_mapping(data["upnl"], "upnl"))

    @classmethod
    def rows_of(cls, rows: Mapping[str, Any]) -> dict[str, PnlRow]:
        """Account id -> row, from rows keyed ``<accountId>.Core`` (the REST answer's ``upnl``,
        the websocket's ``spl`` ``args``)."""
        out: dict[str, PnlRow] = {}
        for key, row in rows.items():
            if str(key).endswith(".Core") and not isinstance(row, Mapping):
                raise IbkrResponseError(f"the PnL row {str(key)[:40]} is not a JSON object")
            if isinstance(row, Mapping):
                account = str(key).split(".")[0]
                out[account] = cls(
                    account_id=account,
                    daily_pnl=amount_of(row.get("dpl")),
                    net_liquidation=amount_of(row.get("nl")),
                    unrealized_pnl=amount_of(row.get("upl")),
                    excess_liquidity=amount_of(row.get("el")),
                    market_value=amount_of(row.get("mv")),
                    raw=row,
                )
        return out


@dataclass(frozen=True)
class LedgerEntry:
    """One currency (or ``BASE``) of ``/portfolio/{id}/ledger``."""

    currency: str
    cash_balance: Decimal | None
    net_liquidation_value: Decimal | None
    unrealized_pnl: Decimal | None
    realized_pnl: Decimal | None
    exchange_rate: Decimal | None
    raw: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Ledger:
    """``GET /portfolio/{accountId}/ledger`` keyed by currency plus ``BASE``."""

    account_id: str
    entries: Mapping[str, LedgerEntry]
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, account_id: str, payload: Json) -> Ledger:
        data = require_mapping(payload, f"/portfolio/{account_id}/ledger")
        entries: dict[str, LedgerEntry] = {}
        for key, item in data.items():
            if isinstance(item, Mapping):
                entries[key] = LedgerEntry(
                    currency=key,
                    cash_balance=amount_of(item.get("cashbalance")),
                    net_liquidation_value=amount_of(item.get("netliquidationvalue")),
                    unrealized_pnl=amount_of(item.get("unrealizedpnl")),
                    realized_pnl=amount_of(item.get("realizedpnl")),
                    exchange_rate=amount_of(item.get("exchangerate")),
                    raw=item,
                )
        if "BASE" not in entries:  # IBKR's ledger always totals in the base currency
            raise IbkrResponseError(f"/portfolio/{account_id}/ledger has no BASE entry: not a ledger")
        return cls(account_id=account_id, entries=entries, raw=data)


@dataclass(frozen=True)
class Position:
    """One row of ``/portfolio/{accountId}/positions/{page}``."""

    account_id: str
    conid: int
    symbol: str | None
    description: str | None
    quantity: float
    market_price: Decimal | None
    market_value: Decimal | None
    average_cost: Decimal | None
    unrealized_pnl: Decimal | None
    realized_pnl: Decimal | None
    currency: str | None
    asset_class: str | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, payload: Json) -> Position:
        data = require_mapping(payload, "a position")
        what = "a position row"
        conid, quantity = optional_int(data, "conid", what), quantity_of(data.get("position"))
        if conid is None or quantity is None:
            raise IbkrResponseError("a position row lacks 'conid' or 'position'")
        description = optional_text(data, "contractDesc", what)
        return cls(
            account_id=optional_text(data, "acctId", what) or "",
            conid=conid,
            symbol=optional_text(data, "ticker", what) or description,
            description=description,
            quantity=quantity,
            market_price=amount_of(data.get("mktPrice")),
            market_value=amount_of(data.get("mktValue")),
            average_cost=amount_of(data.get("avgCost")),
            unrealized_pnl=amount_of(data.get("unrealizedPnl")),
            realized_pnl=amount_of(data.get("realizedPnl")),
            currency=optional_text(data, "currency", what),
            asset_class=optional_text(data, "assetClass", what),
            raw=data,
        )
