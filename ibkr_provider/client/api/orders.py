"""Orders: what-if previews, safe placement, status and cancel.

IBKR's order endpoints (Web API documentation, Orders): ``POST
/iserver/account/{accountId}/orders`` answers with an accepted order, a confirmation question
(``/iserver/reply/{replyId}``) or an error object, all HTTP 200. Placement rules this module
enforces, because money is at stake:

- **One order in flight per account, in fact per login.** IBKR answers "reply id not found"
  when orders race (ibind issues #35, #103). Whether the question context belongs to the
  account or to the brokerage session is not documented, so the lock covers the login (the
  session, which serves every account of it), as ibind's client-wide lock does. It lives in
  the session store, so it holds across every process sharing the session. The queue moves at
  about one order per 5 s, the pace IBKR allows for the order list each placement reads first.
- **Idempotent by cOID.** Before placing, the account's orders are searched for the ticket's
  ``cOID`` (IBKR's ``order_ref``); an order found is adopted, not placed again. A duplicate-cOID
  rejection from IBKR is resolved the same way. So a retried task never places twice.
- **Prompts fail closed.** A question is confirmed only when every message id is in the
  caller's allow-list; any other prompt is declined and raises :class:`IbkrOrderRefusedError`
  with IBKR's text.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from ibkr_provider.client import fields
from ibkr_provider.client.api.base import IbkrApi, read_answer
from ibkr_provider.client.errors import (
    IbkrErrorCode,
    IbkrOrderError,
    IbkrOrderRefusedError,
    IbkrResponseError,
    IbkrValidationError,
)
from ibkr_provider.client.fields import path_segment
from ibkr_provider.client.models.orders import (
    LiveOrder,
    OrderState,
    OrderStatus,
    OrderTicket,
    PlacedOrder,
)
from ibkr_provider.client.models.whatif import WhatIf

if TYPE_CHECKING:
    from ibkr_provider.client.session.stores.base import Lease


log = logging.getLogger(__name__)

#: How long a placement waits for the orders queued before it (the placement lock). Each order
#: reads the order list first, which IBKR paces at 1 request per 5 s, so a rebalance of 60
#: orders of one login queues for about five minutes; fifteen leave room for prompts and retries.
ORDER_QUEUE_SECONDS = 900.0
#: ibind answers at most 20 rounds of questions; so does this module.
MAX_PROMPT_ROUNDS = 20


def order_id_of(value: object) -> str:
    """An IBKR order id (digits), checked before it goes into a URL path."""
    text = str(value).strip()
    if not text.isascii() or not text.isdigit():
        raise IbkrValidationError("order_id", f"{text[:80]!r} is not an IBKR order id (digits)")
    return text


class OrderService:
    """``client.orders``."""

    def __init__(self, api: IbkrApi) -> None:
        self._api = api

    def whatif(self, account_id: str, ticket: OrderTicket) -> WhatIf:
        """Preview an order with IBKR's what-if (nothing is placed)."""
        account = fields.account_id(account_id)
        ticket.validate()
        self._api.iserver_preflight()
        body = {"orders": [ticket.to_json(account)]}
        return WhatIf.from_json(
            self._api.call(
                "POST",
                f"/iserver/account/{path_segment(account)}/orders/whatif",
                json_body=body,
                idempotent=False,
            )
        )

    def live_orders(self) -> list[LiveOrder]:
        """``GET /iserver/account/orders`` (IBKR paces it at 1 per 5 s)."""
        self._api.iserver_preflight()
        payload = self._api.call("GET", "/iserver/account/orders")
        rows = payload.get("orders") if isinstance(payload, Mapping) else None
        if not isinstance(rows, list):
            raise IbkrResponseError(
                "/iserver/account/orders answered without an 'orders' list",
                endpoint="/v1/api/iserver/account/orders",
            )
        return read_answer("/iserver/account/orders", lambda: [LiveOrder.from_json(row) for row in rows])

    def find_by_coid(self, account_id: str, coid: str) -> LiveOrder | None:
        for order in self.live_orders():
            if order.coid == coid and (not order.account_id or order.account_id == account_id):
                return order
        return None

    def status(self, order_id: str) -> OrderStatus:
        """``GET /iserver/account/order/status/{orderId}``."""
        order_id = order_id_of(order_id)
        self._api.iserver_preflight()
        path = f"/iserver/account/order/status/{path_segment(order_id)}"
        payload = self._api.call("GET", path)
        return read_answer(path, lambda: OrderStatus.from_json(order_id, payload))

    def cancel(self, account_id: str, order_id: str) -> Mapping[str, Any]:
        """``DELETE /iserver/account/{accountId}/order/{orderId}``: IBKR acknowledges the request;
        poll the status for the cancellation itself."""
        account, order_id = fields.account_id(account_id), order_id_of(order_id)
        self._api.iserver_preflight()
        payload = self._api.call(
            "DELETE",
            f"/iserver/account/{path_segment(account)}/order/{path_segment(order_id)}",
            idempotent=False,
        )
        if not isinstance(payload, Mapping):
            raise IbkrResponseError("the cancel answer is not a JSON object")
        if payload.get("error"):
            raise IbkrOrderError(
                f"IBKR refused to cancel order {order_id}: {payload['error']}",
                ibkr_error=str(payload["error"]),
                code=IbkrErrorCode.REJECTED,
            )
        return payload

    def place(
        self, account_id: str, ticket: OrderTicket, *, allowed_message_ids: Collection[str] = ()
    ) -> PlacedOrder:
        """Place one order safely (see the module docstring). Returns once IBKR acknowledged it."""
        account_id = fields.account_id(account_id)
        ticket.validate()
        self._api.iserver_preflight()
        asked = time.monotonic()
        with self._api.lock("orders", timeout=ORDER_QUEUE_SECONDS) as lease:
            waited = time.monotonic() - asked
            if waited > 1:
                log.info("waited %.1f s for the orders queued before this one (the placement lock)", waited)
            placed = self._place_locked(account_id, ticket, lease, allowed_message_ids)
            return dataclasses.replace(placed, lock_wait_seconds=round(waited, 3))

    def placed_earlier(self, account_id: str, coid: str) -> PlacedOrder | None:
        """The order an earlier try placed under ``coid``, adopted (IBKR took it, and the answer
        was lost with the try's worker); None when IBKR has none. A retried task asks this before
        its own checks: a price that moved since, or a what-if after that order's fill, must not
        leave a live order unfollowed."""
        account_id = fields.account_id(account_id)
        self._api.iserver_preflight()
        return self._adopt(account_id, coid)

    def _adopt(self, account_id: str, coid: str) -> PlacedOrder | None:
        existing = self.find_by_coid(account_id, coid)
        if existing is None:
            return None
        log.warning("order with cOID %s already exists (id %s): adopting it", coid, existing.order_id)
        return PlacedOrder(existing.order_id, existing.status, coid, adopted=True)

    def _place_locked(
        self, account_id: str, ticket: OrderTicket, lease: Lease, allowed_message_ids: Collection[str]
    ) -> PlacedOrder:
        """Placement under the lock: adopt an order of the same cOID, else POST it and answer
        IBKR's questions."""
        if ticket.coid and (earlier := self._adopt(account_id, ticket.coid)) is not None:
            return earlier
        lease.check()  # never send an order while another process may be placing one
        answer = self._api.call(
            "POST",
            f"/iserver/account/{path_segment(account_id)}/orders",
            json_body={"orders": [ticket.to_json(account_id)]},
            idempotent=False,
        )
        confirmed: list[str] = []
        for _ in range(MAX_PROMPT_ROUNDS):
            if isinstance(answer, Mapping) and answer.get("error"):
                adopted = self._adopt_duplicate(account_id, ticket, str(answer["error"]))
                if adopted is not None:
                    return adopted
                text = str(answer["error"])
                raise IbkrOrderError(
                    f"IBKR rejected the order: {text}", ibkr_error=text, code=IbkrErrorCode.REJECTED
                )
            first = answer[0] if isinstance(answer, list) and answer else None
            if isinstance(first, Mapping) and first.get("order_id") is not None:
                log.info(
                    "order %s placed (%s), cOID %s",
                    first["order_id"],
                    first.get("order_status"),
                    ticket.coid,
                )
                return PlacedOrder(
                    str(first["order_id"]),
                    OrderState.parse(first.get("order_status")),
                    ticket.coid,
                    adopted=False,
                    confirmed_message_ids=tuple(confirmed),
                )
            if isinstance(first, Mapping) and first.get("id"):
                answer = self._answer_prompt(first, allowed_message_ids, confirmed)
                continue
            raise IbkrResponseError(f"unexpected answer to an order: {str(answer)[:200]}")
        raise IbkrOrderError(
            f"IBKR asked more than {MAX_PROMPT_ROUNDS} questions; the order was not confirmed",
            code=IbkrErrorCode.TOO_MANY_PROMPTS,
        )

    def _adopt_duplicate(self, account_id: str, ticket: OrderTicket, text: str) -> PlacedOrder | None:
        """IBKR's duplicate-cOID rejection ("Local order ID=... is already registered") means an
        earlier attempt placed the order: adopt it."""
        if not ticket.coid or "already registered" not in text:
            return None
        existing = self.find_by_coid(account_id, ticket.coid)
        if existing is None:
            return None
        return PlacedOrder(existing.order_id, existing.status, ticket.coid, adopted=True)

    def _answer_prompt(
        self, prompt: Mapping[str, Any], allowed: Collection[str], confirmed: list[str]
    ) -> Any:
        reply_id = str(prompt["id"])
        message_ids = [str(m) for m in prompt.get("messageIds") or []]
        text = " ".join(str(m) for m in prompt.get("message") or []).strip()
        if message_ids and all(m in allowed for m in message_ids):
            log.info("confirming IBKR prompt %s (allowed): %s", message_ids, text)
            confirmed.extend(message_ids)
            return self._api.call(
                "POST",
                f"/iserver/reply/{path_segment(reply_id)}",
                json_body={"confirmed": True},
                idempotent=False,
            )
        self._api.call(
            "POST",
            f"/iserver/reply/{path_segment(reply_id)}",
            json_body={"confirmed": False},
            idempotent=False,
        )
        raise IbkrOrderRefusedError(
            f"IBKR asked for confirmation {message_ids or '(no message id)'}: {text!r}. It is not in "
            "allowed_message_ids, so it was declined and no order was placed; add the id to "
            "allowed_message_ids if this prompt is expected.",
            ibkr_error=text,
            code=IbkrErrorCode.PROMPT_DECLINED,
        )
