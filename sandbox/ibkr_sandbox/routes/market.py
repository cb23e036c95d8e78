"""Contracts and market data: symbol search, snapshots (with IBKR's pre-flight rule), trades
and daily PnL."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from ibkr_sandbox.portfolio import pnl_row
from ibkr_sandbox.routes.common import Gate, ibkr_error


def market_router(gate: Gate) -> APIRouter:
    router = APIRouter()
    state = gate.state

    @router.get("/v1/api/iserver/secdef/search")
    def secdef_search(request: Request, symbol: str = "", name: bool = False, secType: str = "") -> Any:
        gate.brokerage(request)
        wanted = symbol.strip().upper()
        if not wanted:
            raise ibkr_error(400, "Bad Request: symbol required")
        matches = [
            i
            for i in state.book.instruments.values()
            if (i.symbol == wanted or (name and wanted in i.name))
            and (not secType or secType == i.asset_class)
        ]
        return [
            {
                "conid": str(i.conid),
                "companyHeader": f"{i.name} - {i.exchange}",
                "companyName": i.name,
                "symbol": i.symbol,
                "description": i.exchange,
                "restricted": None,
                "fop": None,
                "opt": None,
                "war": None,
                "sections": [{"secType": i.asset_class, "exchange": i.exchange}],
            }
            for i in matches
        ]

    @router.post("/v1/api/iserver/contract/rules")
    async def contract_rules(request: Request) -> dict[str, Any]:
        """The trading rules of a contract (IBKR's Client Portal spec: ``{"conid", "isBuy"}`` in,
        ``sizeIncrement``, ``increment`` (price), order types and TIFs out)."""
        gate.brokerage(request)
        try:
            conid = int((await request.json())["conid"])
        except (KeyError, TypeError, ValueError):
            raise ibkr_error(400, "Bad Request: conid required") from None
        if conid not in state.book.instruments:
            raise ibkr_error(400, f"Bad Request: unknown conid {conid}")
        return {
            "sizeIncrement": gate.settings.size_increments.get(str(conid), 1),
            "increment": 0.01,
            "defaultSize": 100,
            "orderTypes": ["limit", "market"],
            "tifTypes": ["DAY", "GTC", "IOC", "OPG"],
            "preview": True,
        }

    @router.get("/v1/api/iserver/marketdata/snapshot")
    def snapshot(request: Request, conids: str = "", fields: str = "") -> list[dict[str, Any]]:
        """IBKR: "A pre-flight request must be made prior to ever receiving data": the first
        request for a conid in a session answers without fields."""
        record = gate.brokerage(request)
        if not record.iserver_accounts_queried:
            raise ibkr_error(500, "Please query /accounts first")
        try:
            ids = [int(c) for c in conids.split(",") if c.strip()]
        except ValueError:
            raise ibkr_error(400, "Bad Request: conids must be integers") from None
        rows = []
        with state.lock:  # the book's prices and the session's subscriptions
            for conid in ids:
                row: dict[str, Any] = {"conid": conid, "conidEx": str(conid)}
                instrument = state.book.instruments.get(conid)
                if instrument is not None and conid in record.subscribed:
                    price = instrument.last_price
                    values = {
                        "31": f"{price:.2f}",
                        "84": f"{price - 0.01:.2f}",
                        "86": f"{price + 0.01:.2f}",
                        "85": "600",
                        "88": "1,300",
                        "7059": "100",
                        "55": instrument.symbol,
                        "6509": "RpB",
                        "7295": f"{price * 0.995:.2f}",
                        "7741": f"{price * 0.99:.2f}",
                    }
                    wanted = [f.strip() for f in fields.split(",") if f.strip()] or list(values)
                    row.update({f: values[f] for f in wanted if f in values})
                    row.update({"_updated": int(time.time() * 1000), "server_id": "q0"})
                record.subscribed.add(conid)
                rows.append(row)
        return rows

    @router.get("/v1/api/iserver/account/trades")
    def trades(request: Request, days: int = 1, accountId: str = "") -> list[dict[str, Any]]:
        """Executions (filled sandbox orders) of the last ``days`` days (IBKR: at most 7)."""
        record = gate.trading(request)
        accounts = set(state.credentials.get(record.credential, []))
        now = time.time()
        since = now - min(max(days, 1), 7) * 86_400
        listed_before = now - gate.settings.trades_delay_seconds
        rows = []
        with state.lock:
            for o in state.orders.orders.values():
                if o.status != "Filled" or o.account not in accounts or o.created_at < since:
                    continue
                if o.created_at > listed_before:
                    continue
                if accountId and o.account != accountId:
                    continue
                rows.append(o.as_execution(state.book))
        return rows

    @router.get("/v1/api/iserver/account/pnl/partitioned")
    def pnl(request: Request) -> dict[str, Any]:
        """Daily PnL per account (``<id>.Core``), against each instrument's prior close."""
        record = gate.brokerage(request)
        with state.lock:
            rows = {
                f"{account_id}.Core": pnl_row(state.book, state.book.accounts[account_id])
                for account_id in state.credentials.get(record.credential, [])
            }
        return {"upnl": rows}

    return router
