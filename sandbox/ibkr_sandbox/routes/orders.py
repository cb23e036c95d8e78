"""Orders: place, what-if, reply to a confirmation prompt, list, status, cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ibkr_sandbox.order_records import PromptRule
from ibkr_sandbox.routes.common import Gate, SandboxHttpError, ibkr_error


def order_router(gate: Gate) -> APIRouter:
    router = APIRouter()
    state, settings = gate.state, gate.settings

    async def order_list(request: Request) -> list[Any]:
        try:
            body = await request.json()
        except ValueError:
            raise ibkr_error(400, "Bad Request: body must be JSON") from None
        orders = body.get("orders") if isinstance(body, dict) else body
        if not isinstance(orders, list):
            raise ibkr_error(400, 'Bad Request: send {"orders": [...]} or a JSON array of orders')
        return orders

    @router.post("/v1/api/iserver/account/{account_id}/orders")
    async def place_orders(request: Request, account_id: str) -> Any:
        record = gate.trading(request, account_id)
        orders = await order_list(request)
        rules = [PromptRule(**rule) for rule in settings.prompt_rules]
        with state.lock:
            if settings.one_question_per_session:
                state.counters.add(
                    "questions_superseded", state.orders.supersede_questions(record.credential)
                )
            answer = state.orders.submit(state.book, record.credential, account_id, orders, rules)
            if isinstance(answer, list):
                state.counters.add("orders_placed", sum(1 for a in answer if "order_id" in a))
            return answer

    @router.post("/v1/api/iserver/account/{account_id}/orders/whatif")
    async def whatif(request: Request, account_id: str) -> Any:
        gate.trading(request, account_id)
        orders = await order_list(request)
        with state.lock:
            state.counters.add("whatif_requests")
            return state.orders.whatif(state.book, account_id, orders, warn=settings.whatif_warning)

    @router.post("/v1/api/iserver/reply/{reply_id}")
    async def reply(request: Request, reply_id: str) -> Any:
        gate.trading(request)
        body = await request.json()
        confirmed = bool(body.get("confirmed")) if isinstance(body, dict) else False
        with state.lock:
            state.counters.add("order_replies")
            if not confirmed:
                state.counters.add("replies_declined")
            status, answer = state.orders.reply(state.book, reply_id, confirmed)
            if status != 200:
                raise SandboxHttpError(status, answer)
            if isinstance(answer, list):
                state.counters.add("orders_placed", sum(1 for a in answer if "order_id" in a))
            return answer

    @router.get("/v1/api/iserver/account/orders")
    def live_orders(request: Request) -> dict[str, Any]:
        record = gate.trading(request)
        accounts = set(state.credentials.get(record.credential, []))
        with state.lock:
            rows = [
                o.as_live_order(state.book) for o in state.orders.orders.values() if o.account in accounts
            ]
        return {"orders": rows, "snapshot": True}

    @router.get("/v1/api/iserver/account/order/status/{order_id}")
    def order_status(request: Request, order_id: int) -> dict[str, Any]:
        record = gate.trading(request)
        with state.lock:
            order = state.orders.orders.get(order_id)
            if order is None or order.account not in state.credentials.get(record.credential, []):
                raise ibkr_error(400, f"Bad Request: order {order_id} not found")
            row = order.as_live_order(state.book)
        return {
            "order_id": order_id,
            "conid": order.conid,
            "order_status": order.status,
            "side": order.side[0],
            "size": f"{order.quantity:g}",
            "cum_fill": f"{order.filled:g}",
            "average_price": row["avgPrice"],
            "order_type": row["orderType"],
            "account": order.account,
            "order_ref": order.coid,
        }

    @router.delete("/v1/api/iserver/account/{account_id}/order/{order_id}")
    def cancel_order(request: Request, account_id: str, order_id: int) -> dict[str, Any]:
        gate.trading(request, account_id)
        with state.lock:
            answer = state.orders.cancel(account_id, order_id)
        if answer is None:
            raise ibkr_error(400, f"Bad Request: order {order_id} not found in {account_id}")
        return answer

    return router
