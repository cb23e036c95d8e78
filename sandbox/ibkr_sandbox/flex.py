"""The sandbox's Flex Web Service: SendRequest / GetStatement with IBKR's envelope and codes.

GetStatement answers ``Warn 1019`` ("generation in progress") for the first ``flex_pending_polls``
polls of a reference code, and ``Warn 1018`` ("too many requests") when a token polls again
within ``flex_min_interval`` seconds. A bad token answers ``Fail 1015``, an unknown query
``Fail 1014``, an unknown reference ``Fail 1017``. The report is built from the sandbox book:
open positions, trades (filled sandbox orders) and a cash report.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from xml.sax.saxutils import quoteattr

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ibkr_sandbox.state import SandboxState

SANDBOX_FLEX_QUERY_ID = "100001"
FLEX_PATH = "/AccountManagement/FlexWebService"


@dataclass
class FlexRequest:
    query_id: str
    from_date: str
    to_date: str
    pending_polls: int


def _envelope(status: str, **fields: str) -> Response:
    stamp = datetime.now(timezone.utc).strftime("%d %B, %Y %I:%M %p UTC")
    body = "".join(f"<{key}>{value}</{key}>" for key, value in fields.items())
    xml = (
        f"<FlexStatementResponse timestamp='{stamp}'><Status>{status}</Status>{body}</FlexStatementResponse>"
    )
    return Response(xml, media_type="text/xml")


def _error(status: str, code: int, text: str) -> Response:
    return _envelope(status, ErrorCode=str(code), ErrorMessage=text)


def _attrs(values: dict[str, object]) -> str:
    return " ".join(f"{key}={quoteattr(str(value))}" for key, value in values.items())


def report_xml(state: SandboxState, request: FlexRequest) -> str:
    """A FlexQueryResponse with one FlexStatement per account of the sandbox user."""
    book = state.book
    generated = datetime.now(timezone.utc).strftime("%Y%m%d;%H%M%S")
    statements = []
    for account in book.accounts.values():
        positions = "".join(
            "<OpenPosition "
            + _attrs(
                {
                    "accountId": account.account_id,
                    "currency": "USD",
                    "assetCategory": "STK",
                    "symbol": book.instruments[p.conid].symbol,
                    "conid": p.conid,
                    "position": p.quantity,
                    "markPrice": book.instruments[p.conid].last_price,
                    "positionValue": round(book.instruments[p.conid].last_price * p.quantity, 2),
                    "costBasisPrice": p.avg_cost,
                    "reportDate": request.to_date,
                }
            )
            + "/>"
            for p in account.positions
        )
        trades = "".join(
            "<Trade "
            + _attrs(
                {
                    "accountId": o.account,
                    "currency": "USD",
                    "assetCategory": "STK",
                    "symbol": book.instruments[o.conid].symbol,
                    "conid": o.conid,
                    "tradeID": o.order_id,
                    "buySell": o.side,
                    "quantity": o.filled if o.side == "BUY" else -o.filled,
                    "tradePrice": o.avg_price,
                    "ibCommission": -1.0,
                    "orderReference": o.coid or "",
                    "tradeDate": datetime.fromtimestamp(o.created_at, timezone.utc).strftime("%Y%m%d"),
                }
            )
            + "/>"
            for o in state.orders.orders.values()
            if o.account == account.account_id and o.status == "Filled"
        )
        cash = (
            "<CashReportCurrency "
            + _attrs(
                {
                    "accountId": account.account_id,
                    "currency": "BASE_SUMMARY",
                    "endingCash": round(account.cash, 2),
                    "endingSettledCash": round(account.cash, 2),
                    "commissions": 0,
                    "dividends": 0,
                }
            )
            + "/>"
        )
        statements.append(
            f"<FlexStatement accountId={quoteattr(account.account_id)} "
            f"fromDate={quoteattr(request.from_date)} toDate={quoteattr(request.to_date)} "
            f'period="Custom" whenGenerated="{generated}">'
            f"<OpenPositions>{positions}</OpenPositions><Trades>{trades}</Trades>"
            f"<CashReport>{cash}</CashReport></FlexStatement>"
        )
    return (
        '<FlexQueryResponse queryName="Sandbox Activity" type="AF">'
        f'<FlexStatements count="{len(statements)}">{"".join(statements)}</FlexStatements>'
        "</FlexQueryResponse>"
    )


def add_flex_routes(app: FastAPI, state: SandboxState, token: str) -> None:
    """Mount SendRequest and GetStatement; ``token`` is the one valid Flex token."""
    requests_by_ref: dict[str, FlexRequest] = state.flex_requests  # kept across a --persist restart
    last_poll: dict[str, float] = {}

    count = state.counters.add

    @app.get(f"{FLEX_PATH}/SendRequest")
    def send_request(
        request: Request, t: str = "", q: str = "", v: str = "", fd: str = "", td: str = ""
    ) -> Response:
        count("flex_send_requests")
        if not request.headers.get("user-agent"):
            return _error("Fail", 1020, "Invalid request or unable to validate request.")
        if t != token:
            return _error("Fail", 1015, "Token is invalid.")
        if state.settings.flex_token_expired:
            return _error("Fail", 1012, "Token has expired.")
        if q != SANDBOX_FLEX_QUERY_ID:
            return _error("Fail", 1014, "Query is invalid.")
        today = state.settings.flex_report_date or datetime.now(timezone.utc).strftime("%Y%m%d")
        reference = str(secrets.randbelow(9_000_000_000) + 1_000_000_000)
        requests_by_ref[reference] = FlexRequest(
            q, fd or today, td or today, state.settings.flex_pending_polls
        )
        base = state.settings.flex_statement_base or str(request.base_url).rstrip("/")
        return _envelope("Success", ReferenceCode=reference, Url=f"{base}{FLEX_PATH}/GetStatement")

    @app.get(f"{FLEX_PATH}/GetStatement")
    def get_statement(t: str = "", q: str = "", v: str = "") -> Response:
        count("flex_polls")
        if t != token:
            return _error("Fail", 1015, "Token is invalid.")
        pending = requests_by_ref.get(q)
        if pending is None:
            return _error("Fail", 1017, "Reference code is invalid.")
        now = time.monotonic()
        previous = last_poll.get(t)
        last_poll[t] = now
        if previous is not None and now - previous < state.settings.flex_min_interval:
            count("flex_1018")
            return _error(
                "Warn", 1018, "Too many requests have been made from this token. Please try again shortly."
            )
        if pending.pending_polls > 0:
            pending.pending_polls -= 1
            count("flex_1019")
            return _error("Warn", 1019, "Statement generation in progress. Please try again shortly.")
        with state.lock:
            xml = report_xml(state, pending)
        return Response(xml, media_type="text/xml")
