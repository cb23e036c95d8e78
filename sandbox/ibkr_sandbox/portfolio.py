"""IBKR-shaped JSON views of the sandbox book (accounts, summary, ledger, positions)."""

from __future__ import annotations

import time
from typing import Any

from ibkr_sandbox.seed import SeedAccount, SeedBook

POSITIONS_PAGE_SIZE = 100


def _price(book: SeedBook, conid: int) -> float:
    return book.instruments[conid].last_price


def account_json(account: SeedAccount) -> dict[str, Any]:
    """An entry of ``GET /portfolio/accounts`` with IBKR's field names."""
    return {
        "id": account.account_id,
        "accountId": account.account_id,
        "accountVan": account.account_id,
        "accountTitle": account.title,
        "displayName": account.account_id,
        "accountAlias": None,
        "accountStatus": 1_644_814_800_000,
        "currency": "USD",
        "type": "DEMO" if account.paper else "INDIVIDUAL",
        "tradingType": "STKNOPT",
        "businessType": "IB_PROSERVE",
        "ibEntity": "IBLLC-US",
        "faclient": False,
        "clearingStatus": "O",
        "covestor": False,
        "noClientTrading": False,
        "trackVirtualFXPortfolio": True,
        "parent": {"mmc": [], "accountId": "", "isMParent": False, "isMChild": False, "isMultiplex": False},
        "desc": account.account_id,
    }


def position_rows(book: SeedBook, account: SeedAccount) -> list[dict[str, Any]]:
    rows = []
    for pos in account.positions:
        inst = book.instruments[pos.conid]
        price = _price(book, pos.conid)
        value = round(price * pos.quantity, 2)
        rows.append(
            {
                "acctId": account.account_id,
                "conid": inst.conid,
                "contractDesc": inst.symbol,
                "position": pos.quantity,
                "mktPrice": price,
                "mktValue": value,
                "currency": inst.currency,
                "avgCost": pos.avg_cost,
                "avgPrice": pos.avg_cost,
                "realizedPnl": 0.0,
                "unrealizedPnl": round(value - pos.avg_cost * pos.quantity, 2),
                "exchs": None,
                "expiry": None,
                "putOrCall": None,
                "multiplier": None,
                "strike": 0.0,
                "exerciseStyle": None,
                "undConid": 0,
                "model": "",
                "assetClass": inst.asset_class,
                "ticker": inst.symbol,
                "name": inst.name,
                "fullName": inst.symbol,
                "listingExchange": inst.exchange,
                "isUS": True,
                "hasOptions": True,
                "pageSize": POSITIONS_PAGE_SIZE,
            }
        )
    return rows


def positions_page(book: SeedBook, account: SeedAccount, page: int) -> list[dict[str, Any]]:
    rows = position_rows(book, account)
    start = page * POSITIONS_PAGE_SIZE
    return rows[start : start + POSITIONS_PAGE_SIZE]


def _totals(book: SeedBook, account: SeedAccount) -> tuple[float, float, float]:
    """(gross position value, cash, unrealized PnL)."""
    gross = sum(_price(book, p.conid) * p.quantity for p in account.positions)
    upnl = sum((_price(book, p.conid) - p.avg_cost) * p.quantity for p in account.positions)
    return gross, account.cash, upnl


def summary_json(book: SeedBook, account: SeedAccount) -> dict[str, Any]:
    """``/portfolio/{id}/summary``: metric -> {amount, currency, isNull, timestamp, value, severity}."""
    gross, cash, _ = _totals(book, account)
    net_liq = gross + cash
    maint = gross * 0.25
    init = gross * 0.30
    excess = net_liq - maint
    now_ms = int(time.time() * 1000)

    def metric(amount: float | None, value: str | None = None) -> dict[str, Any]:
        return {
            "amount": round(amount, 2) if amount is not None else 0.0,
            "currency": "USD" if amount is not None else None,
            "isNull": amount is None,
            "timestamp": now_ms,
            "value": value,
            "severity": 0,
        }

    return {
        "accountcode": metric(None, account.account_id),
        "accounttype": metric(None, "INDIVIDUAL"),
        "netliquidation": metric(net_liq),
        "totalcashvalue": metric(cash),
        "settledcash": metric(cash),
        "grosspositionvalue": metric(gross),
        "equitywithloanvalue": metric(net_liq),
        "initmarginreq": metric(init),
        "maintmarginreq": metric(maint),
        "availablefunds": metric(net_liq - init),
        "excessliquidity": metric(excess),
        "buyingpower": metric(max(0.0, (net_liq - init) * 4)),
        "cushion": {
            **metric(None),
            "amount": round(excess / net_liq, 4) if net_liq else 0.0,
            "isNull": False,
            "currency": None,
        },
        "leverage-s": {
            **metric(None),
            "amount": round(gross / net_liq, 4) if net_liq else 0.0,
            "isNull": False,
            "currency": None,
        },
    }


def ledger_json(book: SeedBook, account: SeedAccount) -> dict[str, Any]:
    """``/portfolio/{id}/ledger`` keyed by currency plus ``BASE`` (all USD in the sandbox)."""
    gross, cash, upnl = _totals(book, account)
    entry = {
        "commoditymarketvalue": 0.0,
        "futuremarketvalue": 0.0,
        "settledcash": round(cash, 2),
        "exchangerate": 1,
        "sessionid": 1,
        "cashbalance": round(cash, 2),
        "corporatebondsmarketvalue": 0.0,
        "warrantsmarketvalue": 0.0,
        "netliquidationvalue": round(gross + cash, 2),
        "interest": 0.0,
        "unrealizedpnl": round(upnl, 2),
        "stockmarketvalue": round(gross, 2),
        "moneyfunds": 0.0,
        "currency": "USD",
        "realizedpnl": 0.0,
        "funds": 0.0,
        "acctcode": account.account_id,
        "issueroptionsmarketvalue": 0.0,
        "key": "LedgerList",
        "timestamp": int(time.time()),
        "severity": 0,
        "stockoptionmarketvalue": 0.0,
        "futuresonlypnl": 0.0,
        "tbondsmarketvalue": 0.0,
        "futureoptionmarketvalue": 0.0,
        "cashbalancefxsegment": 0.0,
        "secondkey": "USD",
        "tbillsmarketvalue": 0.0,
        "endofbundle": 1,
        "dividends": 0.0,
    }
    return {"USD": entry, "BASE": {**entry, "currency": "BASE", "secondkey": "BASE"}}


def pnl_row(book: SeedBook, account: SeedAccount) -> dict[str, Any]:
    """One ``<id>.Core`` row of ``/iserver/account/pnl/partitioned`` and of the ``spl`` topic:
    daily PnL against each instrument's prior close, net liquidation, unrealised PnL, excess
    liquidity (25% maintenance) and market value."""
    gross, cash, upnl = _totals(book, account)
    daily = sum(
        (_price(book, p.conid) - book.instruments[p.conid].prior_close) * p.quantity
        for p in account.positions
    )
    net = gross + cash
    return {
        "rowType": 1,
        "dpl": round(daily, 2),
        "nl": round(net, 2),
        "upl": round(upnl, 2),
        "el": round(net - gross * 0.25, 2),
        "mv": round(gross, 2),
    }
