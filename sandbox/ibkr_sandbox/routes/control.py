"""``/__sandbox__/*``: the sandbox's own control plane (health, stats, reset, prices, market
ticks, dropped brokerage sessions, expired sessions, the order list and the book's size, settings and injected
faults). Not part of IBKR's API."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from fastapi import APIRouter, Request

from ibkr_sandbox import market as sandbox_market
from ibkr_sandbox.ledger import Fault
from ibkr_sandbox.malformed import SHAPES
from ibkr_sandbox.routes.common import Gate, ibkr_error


def control_router(gate: Gate) -> APIRouter:
    router = APIRouter()
    state, settings = gate.state, gate.settings

    @router.get("/__sandbox__/health")
    def health() -> dict[str, Any]:
        return {
            "ok": True,
            "mode": "gateway" if settings.gateway else "oauth1a" if settings.oauth1a else "oauth2",
        }

    @router.post("/__sandbox__/oauth1/expire-lst")
    def expire_lst() -> dict[str, Any]:
        """Make every current live session token invalid: the next request answers 410 Gone."""
        if state.oauth1 is None:
            raise ibkr_error(400, "the sandbox serves no OAuth 1.0a (gateway mode)")
        with state.lock:
            expired = state.oauth1.expire_tokens()
        return {"expired": len(expired)}

    @router.get("/__sandbox__/oauth1/signatures")
    def lst_signatures() -> list[str]:
        """The ``oauth_signature`` of every live-session-token request since the last reset, as
        received (percent-encoded)."""
        if state.oauth1 is None:
            raise ibkr_error(400, "the sandbox serves no OAuth 1.0a (gateway mode)")
        with state.lock:
            return list(state.oauth1.received_signatures)

    @router.get("/__sandbox__/stats")
    def stats() -> dict[str, Any]:
        return state.stats()

    @router.post("/__sandbox__/reset")
    def reset() -> dict[str, Any]:
        state.reset()
        return {"ok": True}

    @router.post("/__sandbox__/prices")
    async def set_price(request: Request) -> dict[str, Any]:
        """Move an instrument's price, now or ``after`` seconds; resting limit orders fill when
        it crosses their limit."""
        body = await request.json()
        try:
            conid, price = int(body["conid"]), float(body["price"])
            after = float(body.get("after") or 0)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ibkr_error(
                400, 'send {"conid": <int>, "price": <number>, "after": <seconds, optional>}'
            ) from None
        if conid not in state.book.instruments or price <= 0:
            raise ibkr_error(400, f"unknown conid {conid} or non-positive price")
        if after > 0:
            with state.lock:
                state.price_moves.append((time.time() + after, conid, price))
        else:
            sandbox_market.set_price(state, conid, price)
        return {"conid": conid, "price": price, "after": after}

    @router.get("/__sandbox__/market")
    def market(conids: str = "") -> dict[str, Any]:
        """The current tick and prices (of ``conids``, comma separated, or every instrument)."""
        try:
            wanted = [int(c) for c in conids.split(",") if c.strip()]
        except ValueError:
            raise ibkr_error(400, "conids must be comma-separated integers") from None
        with state.lock:
            tick = sandbox_market.advance_market(state)
            instruments = state.book.instruments
            chosen = wanted or list(instruments)
            prices = {str(c): instruments[c].last_price for c in chosen if c in instruments}
        return {"tick": tick, "prices": prices}

    @router.post("/__sandbox__/market")
    async def step_market(request: Request) -> dict[str, Any]:
        """Move the market ``{"ticks": n}`` ticks ahead now (n >= 1)."""
        body = await request.json()
        try:
            ticks = int(body["ticks"])
        except (KeyError, TypeError, ValueError):
            raise ibkr_error(400, 'send {"ticks": <positive integer>}') from None
        if ticks < 1:
            raise ibkr_error(400, "ticks must be at least 1")
        return {"tick": sandbox_market.step_market(state, ticks)}

    @router.post("/__sandbox__/accounts/{account_id}/kind")
    async def set_account_kind(request: Request, account_id: str) -> dict[str, Any]:
        """Report an account as paper or live (``{"paper": bool}``) from now on, whatever its id
        looks like; ``reset`` restores the seeded kinds."""
        body = await request.json()
        paper = body.get("paper") if isinstance(body, dict) else None
        if not isinstance(paper, bool):
            raise ibkr_error(400, 'send {"paper": true} or {"paper": false}')
        with state.lock:
            account = state.book.accounts.get(account_id)
            if account is None:
                raise ibkr_error(404, f"no account {account_id}")
            account.paper = paper
        return {"account_id": account_id, "paper": paper}

    @router.post("/__sandbox__/sessions/drop-brokerage")
    def drop_brokerage() -> dict[str, Any]:
        """Drop every brokerage session (as IBKR's nightly reset does); SSO sessions stay."""
        with state.lock:
            for record in state.sessions.values():
                record.brokerage = False
                record.iserver_accounts_queried = False
                record.subscribed.clear()
            state.brokerage_holder.clear()
        return {"ok": True}

    @router.post("/__sandbox__/sessions/expire")
    def expire_sessions() -> dict[str, Any]:
        """End every session and access token at once, as when IBKR logs everyone out: each
        client's next request answers 401 and it must log in again."""
        with state.lock:
            ended = len(state.sessions)
            for session_id in list(state.sessions):
                state.end_session(session_id)
            state.access_tokens.clear()
            state.counters.add("sessions_expired_by_control")
        return {"ended": ended}

    @router.get("/__sandbox__/orders")
    def all_orders() -> list[dict[str, Any]]:
        """Every order the sandbox holds, with its client order id (cOID), in order of arrival:
        how a test counts placements per cOID."""
        with state.lock:
            return [
                {
                    "order_id": order.order_id,
                    "account": order.account,
                    "coid": order.coid,
                    "conid": order.conid,
                    "side": order.side,
                    "quantity": order.quantity,
                    "order_type": order.order_type,
                    "limit_price": order.limit_price,
                    "filled": order.filled,
                    "status": order.status,
                    "created_at": order.created_at,
                }
                for order in state.orders.orders.values()
            ]

    @router.get("/__sandbox__/book")
    def book() -> dict[str, Any]:
        """Each account's cash and number of positions: what a complete snapshot of it holds."""
        with state.lock:
            return {
                account.account_id: {"cash": account.cash, "positions": len(account.positions)}
                for account in state.book.accounts.values()
            }

    @router.post("/__sandbox__/ws")
    async def ws_fault(request: Request) -> dict[str, Any]:
        """Do something to every open websocket: ``{"fault": "drop" | "silence" | "malformed" |
        "close", "code": 1011, "reason": "..."}``; ``GET`` counts them."""
        body = await request.json()
        try:
            hit = state.streams.inject(
                str(body.get("fault")), int(body.get("code", 1011)), str(body.get("reason", ""))
            )
        except ValueError as exc:
            raise ibkr_error(400, str(exc)) from None
        return {"sockets": hit}

    @router.get("/__sandbox__/ws")
    def ws_sockets() -> dict[str, int]:
        return state.streams.snapshot()

    @router.get("/__sandbox__/config")
    def get_config() -> dict[str, Any]:
        return dataclasses.asdict(settings)

    @router.post("/__sandbox__/config")
    async def set_config(request: Request) -> dict[str, Any]:
        body = await request.json()
        if not isinstance(body, dict):
            raise ibkr_error(400, "config must be a JSON object")
        with state.lock:
            try:
                settings.update(body)
            except ValueError as exc:
                raise ibkr_error(400, str(exc)) from None
        return dataclasses.asdict(settings)

    @router.get("/__sandbox__/faults")
    def list_faults() -> list[dict[str, Any]]:
        return state.faults.listed()

    @router.post("/__sandbox__/faults")
    async def add_fault(request: Request) -> dict[str, Any]:
        body = await request.json()
        try:
            fault = Fault(
                path=str(body["path"]),
                kind=str(body["kind"]),
                remaining=int(body.get("count", 1)),
                method=body.get("method"),
                retry_after=body.get("retry_after"),
                delay=float(body.get("delay", 0.0)),
                body=body.get("body"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ibkr_error(400, f"fault needs path and kind: {exc}") from None
        kinds = (
            "drop",
            "drop_after",
            "delay",
            "delay_after",
            "stale",
            "malformed",
            "401",
            "410",
            "429",
            "500",
            "502",
            "503",
            "504",
        )
        if fault.kind not in kinds:
            raise ibkr_error(400, f"kind must be one of {', '.join(kinds)}")
        if fault.kind == "stale" and fault.body is None:
            raise ibkr_error(400, 'a stale fault needs the "body" to answer with')
        if fault.kind == "malformed" and fault.body not in SHAPES:
            raise ibkr_error(400, f'a malformed fault needs "body": one of {", ".join(SHAPES)}')
        state.faults.add(fault)
        return dataclasses.asdict(fault)

    @router.delete("/__sandbox__/faults")
    def clear_faults() -> dict[str, Any]:
        state.faults.clear()
        return {"ok": True}

    return router
