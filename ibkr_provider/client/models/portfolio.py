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
from ibkr_provider.client.models._json import Json, require_mapping
from ibkr_provider.client.models.numbers import to_decimal, to_float


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
        account_id = data.get("accountId") or data.get("id")
        if not account_id:
            raise IbkrResponseError("/portfolio/accounts returned an account without 'accountId'")
        return cls(
            account_id=str(account_id),
            display_name=data.get("displayName"),
            currency=data.get("currency"),
            type=data.get("type"),
            trading_type=data.get("tradingType"),
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
        data = require_mapping(payload, f"/portfolio/{account_id}/summary")
        metrics: dict[str, SummaryValue] = {}
        for name, item in data.items():
            if isinstance(item, Mapping):
                metrics[name] = SummaryValue(
                    amount=None if item.get("isNull") else to_decimal(item.get("amount")),
                    currency=item.get("currency"),
                    value=item.get("value"),
                    timestamp_ms=item.get("timestamp"),
                )
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
        return cls.rows_of(require_mapping(data.get("upnl") or {}, "upnl"))

    @classmethod
    def rows_of(cls, rows: Mapping[str, Any]) -> dict[str, PnlRow]:
        """Account id -> row, from rows keyed ``<accountId>.Core`` (the REST answer's ``upnl``,
        the websocket's ``spl`` ``args``)."""
        out: dict[str, PnlRow] = {}
        for key, row in rows.items():
            if isinstance(row, Mapping):
                account = str(key).split(".")[0]
                out[account] = cls(
                    account_id=account,
                    daily_pnl=to_decimal(row.get("dpl")),
                    net_liquidation=to_decimal(row.get("nl")),
                    unrealized_pnl=to_decimal(row.get("upl")),
                    excess_liquidity=to_decimal(row.get("el")),
                    market_value=to_decimal(row.get("mv")),
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
                    cash_balance=to_decimal(item.get("cashbalance")),
                    net_liquidation_value=to_decimal(item.get("netliquidationvalue")),
                    unrealized_pnl=to_decimal(item.get("unrealizedpnl")),
                    realized_pnl=to_decimal(item.get("realizedpnl")),
                    exchange_rate=to_decimal(item.get("exchangerate")),
                    raw=item,
                )
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
        conid, quantity = data.get("conid"), to_float(data.get("position"))
        if conid is None or quantity is None:
            raise IbkrResponseError("a position row lacks 'conid' or 'position'")
        return cls(
            account_id=str(data.get("acctId") or ""),
            conid=int(conid),
            symbol=data.get("ticker") or data.get("contractDesc"),
            description=data.get("contractDesc"),
            quantity=quantity,
            market_price=to_decimal(data.get("mktPrice")),
            market_value=to_decimal(data.get("mktValue")),
            average_cost=to_decimal(data.get("avgCost")),
            unrealized_pnl=to_decimal(data.get("unrealizedPnl")),
            realized_pnl=to_decimal(data.get("realizedPnl")),
            currency=data.get("currency"),
            asset_class=data.get("assetClass"),
            raw=data,
        )
