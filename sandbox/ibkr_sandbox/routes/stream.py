"""``/v1/api/ws``: IBKR's websocket, as its documentation describes it.

Authentication, as IBKR takes it: an OAuth 2.0 client sets the query parameter
``sessionToken`` to its bearer token (IBKR's changelog, 2026-03-12); otherwise the cookie
``api=<session>`` on the upgrade request, or, without it, the socket says
``{"message":"waiting for session"}`` and the first message must be ``{"session":"<session>"}``
(the ``session`` of ``/tickle``). A brokerage session must exist. Then ``sts``
(``{"authenticated":true}``) and ``system`` (``{"success":"<username>"}``).

Topics: ``sor+{}`` (live orders: the current ones at once, then every change), ``str+{}``
(executions: those of the last 7 days at once, IBKR's replay, then each new fill), ``smd+CONID+
{"fields":[...]}`` (a tick whenever the price moves), ``spl+{}`` (profit and loss: ``args`` keyed
by ``<account>.Core`` as ``/iserver/account/pnl/partitioned`` rows, the current ones at once, then
each account whose figures changed), the ``u..`` forms to stop, ``tic`` (keeps
the socket alive). A ``system`` heartbeat ``{"hb": <ms>}`` goes out every ``ws_heartbeat_seconds``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ibkr_sandbox.market import advance_market
from ibkr_sandbox.portfolio import pnl_row
from ibkr_sandbox.routes.common import Gate
from ibkr_sandbox.sessions import SsoSessionRecord
from ibkr_sandbox.stream import StreamConnection


class _Subscriptions:
    """What one socket asked for, and what it has been sent."""

    def __init__(self) -> None:
        self.orders = False
        self.trades = False
        self.pnl = False
        self.market: dict[int, list[str]] = {}
        self.sent_orders: dict[int, tuple[str, float]] = {}
        self.sent_executions: set[str] = set()
        self.sent_prices: dict[int, float] = {}
        self.sent_pnl: dict[str, dict[str, Any]] = {}


def stream_router(gate: Gate) -> APIRouter:
    router = APIRouter()
    state, settings = gate.state, gate.settings

    def by_session(value: str | None) -> SsoSessionRecord | None:
        """The brokerage session whose ``/tickle`` ``session`` is ``value``."""
        with state.lock:
            for record in state.sessions.values():
                if value and record.public_id == value and record.brokerage:
                    return state.live_session(record.session_id)
        return None

    def handshake_login(socket: WebSocket) -> SsoSessionRecord | None:
        token = socket.query_params.get("sessionToken")
        if token:
            record = state.live_session(token)
            return record if record is not None and record.brokerage else None
        return by_session(socket.cookies.get("api"))

    def updates(record: SsoSessionRecord, subs: _Subscriptions) -> list[dict[str, Any]]:
        """What changed since the last turn, as IBKR's messages (under the state lock)."""
        advance_market(state)
        accounts = set(state.credentials.get(record.credential, []))
        out: list[dict[str, Any]] = []
        with state.lock:
            mine = [o for o in state.orders.orders.values() if o.account in accounts]
            if subs.orders:
                changed = [o for o in mine if subs.sent_orders.get(o.order_id) != (o.status, o.filled)]
                if changed:
                    out.append({"topic": "sor", "args": [o.as_live_order(state.book) for o in changed]})
                    subs.sent_orders.update({o.order_id: (o.status, o.filled) for o in changed})
            if subs.trades:
                listed_before = time.time() - settings.trades_delay_seconds
                new = [
                    o.as_execution(state.book)
                    for o in mine
                    if o.status == "Filled" and o.created_at <= listed_before
                ]
                fresh = [row for row in new if row["execution_id"] not in subs.sent_executions]
                if fresh:
                    out.append({"topic": "str", "args": fresh})
                    subs.sent_executions.update(row["execution_id"] for row in fresh)
            for conid, fields in subs.market.items():
                instrument = state.book.instruments.get(conid)
                if instrument is None or subs.sent_prices.get(conid) == instrument.last_price:
                    continue
                price = instrument.last_price
                values = {"31": f"{price:.2f}", "84": f"{price - 0.01:.2f}", "86": f"{price + 0.01:.2f}"}
                tick = {f: values[f] for f in fields if f in values}
                out.append(
                    {"topic": f"smd+{conid}", "conid": conid, "_updated": int(time.time() * 1000), **tick}
                )
                subs.sent_prices[conid] = price
            if subs.pnl:
                rows = {f"{a}.Core": pnl_row(state.book, state.book.accounts[a]) for a in sorted(accounts)}
                changed_pnl = {key: row for key, row in rows.items() if subs.sent_pnl.get(key) != row}
                if changed_pnl:
                    out.append({"topic": "spl", "args": changed_pnl})
                    subs.sent_pnl.update(changed_pnl)
        return out

    def handle(text: str, subs: _Subscriptions) -> dict[str, Any] | None:
        """A client message: a subscription change, or ``tic``."""
        topic, _, rest = text.partition("+")
        if topic == "tic":
            return {"topic": "tic", "alive": True}
        if topic in ("sor", "uor"):
            subs.orders = topic == "sor"
            subs.sent_orders.clear()
        elif topic in ("str", "utr"):
            subs.trades = topic == "str"
        elif topic in ("spl", "upl"):
            subs.pnl = topic == "spl"
            subs.sent_pnl.clear()
        elif topic in ("smd", "umd"):
            conid_text, _, args = rest.partition("+")
            conid = int(conid_text.split("@")[0])
            if topic == "umd":
                subs.market.pop(conid, None)
            else:
                fields = json.loads(args or "{}").get("fields") or ["31"]
                subs.market[conid] = [str(f) for f in fields]
                subs.sent_prices.pop(conid, None)
        return None

    @router.websocket("/v1/api/ws")
    async def ws(socket: WebSocket) -> None:
        record = None if settings.ws_refuse else await asyncio.to_thread(handshake_login, socket)
        await socket.accept()
        if settings.ws_refuse:
            state.counters.add("ws_refused")
            await socket.close(code=1008, reason="not authenticated")
            return
        state.counters.add("ws_connections")
        if record is None:
            await socket.send_json({"message": "waiting for session"})
            try:
                first = json.loads(await asyncio.wait_for(socket.receive_text(), timeout=10))
            except (TimeoutError, ValueError, WebSocketDisconnect):
                first = {}
            record = await asyncio.to_thread(
                by_session, first.get("session") if isinstance(first, dict) else None
            )
            if record is None:
                state.counters.add("ws_refused")
                await socket.close(code=1008, reason="not authenticated")
                return
        connection = StreamConnection(record.credential)
        state.streams.add(connection)
        subs = _Subscriptions()
        try:
            await socket.send_json({"topic": "sts", "args": {"authenticated": True}})
            await socket.send_json({"topic": "system", "success": record.credential})
            await _serve(socket, record, subs, connection)
        except WebSocketDisconnect:
            pass
        finally:
            state.streams.remove(connection)

    async def _serve(
        socket: WebSocket, record: SsoSessionRecord, subs: _Subscriptions, connection: StreamConnection
    ) -> None:
        last_heartbeat = time.monotonic()
        receiving = asyncio.ensure_future(socket.receive_text())
        while True:
            done, _ = await asyncio.wait({receiving}, timeout=settings.ws_push_interval)
            if receiving in done:
                answer = handle(receiving.result(), subs)
                if answer is not None and connection.fault != "silence":
                    await socket.send_json(answer)
                receiving = asyncio.ensure_future(socket.receive_text())
            if connection.fault == "silence":
                continue
            if connection.fault == "malformed":
                connection.fault = None
                state.counters.add("ws_fault_malformed")
                await socket.send_text("{not json")
            elif connection.fault is not None:
                receiving.cancel()
                await _end(socket, connection)
                return
            for message in await asyncio.to_thread(updates, record, subs):
                await socket.send_json(message)
            if time.monotonic() - last_heartbeat >= settings.ws_heartbeat_seconds:
                await socket.send_json({"topic": "system", "hb": int(time.time() * 1000)})
                last_heartbeat = time.monotonic()

    async def _end(socket: WebSocket, connection: StreamConnection) -> None:
        """``drop``: the TCP connection closes without a close frame (the control layer put
        uvicorn's transport in the scope); ``close``: a close frame with the code and reason."""
        state.counters.add(f"ws_fault_{connection.fault}")
        if connection.fault == "drop":
            transport = socket.scope.get("sandbox.transport")
            if transport is not None:
                transport.close()
                return
        await socket.close(code=connection.close_code, reason=connection.close_reason or "closed by IBKR")

    return router
