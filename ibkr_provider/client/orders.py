"""Orders: what-if previews, safe placement, status and cancel (shared reference 5.6-5.8).

Placement rules this module enforces, because money is at stake:

- **One order in flight per account, in fact per login.** IBKR answers "reply id not found"
  when orders race (ibind issues #35, #103). Whether the question context belongs to the
  account or to the brokerage session is not documented, so the lock covers the login (the
  session, which serves every account of it), as ibind's client-wide lock does. It lives in
  the session store, so it holds across every process sharing the session. The queue moves at
  about one order per 5 s, the pace IBKR allows for the order list each placement reads first.
- **Idempotent by cOID.** Before placing, the account's orders are searched for the ticket's
  ``cOID`` (IBKR's ``order_ref``); an order found is adopted, not placed again. A duplicate-cOID
  rejection from IBKR is resolved the same way. So a retried task never places twice.
- **Prompts fail closed.** IBKR may answer with a question (``/iserver/reply/{id}``). It is
  confirmed only when every message id is in the caller's allow-list; any other prompt is
  declined and raises :class:`IbkrOrderError` with IBKR's text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ibkr_provider.client.errors import (
    IbkrErrorCode,
    IbkrOrderError,
    IbkrOrderRefusedError,
    IbkrResponseError,
    IbkrValidationError,
)

if TYPE_CHECKING:
    from ibkr_provider.client.client import IbkrClient

log = logging.getLogger(__name__)

#: How long a placement waits for the orders queued before it (the placement lock). Each order
#: reads the order list first, which IBKR paces at 1 request per 5 s, so a rebalance of 60
#: orders of one login queues for about five minutes; fifteen leave room for prompts and retries.
ORDER_QUEUE_SECONDS = 900.0

#: IBKR's terminal order states (``status`` of /iserver/account/orders).
TERMINAL_STATUSES = frozenset({"Filled", "Cancelled", "Inactive", "Rejected"})
#: ibind answers at most 20 rounds of questions; so does this module.
MAX_PROMPT_ROUNDS = 20
_MONEY = re.compile(r"-?[\d,]*\.?\d+")


def parse_money(text: Any) -> float | None:
    """``"1,234.56 USD"`` -> 1234.56 (IBKR's what-if values are strings)."""
    if isinstance(text, (int, float)):
        return float(text)
    match = _MONEY.search(str(text or ""))
    return float(match.group(0).replace(",", "")) if match else None


@dataclass(frozen=True)
class OrderTicket:
    """An order as the caller means it. ``quantity`` or ``cash_quantity`` (a cash-quantity order,
    e.g. for dollar-cost averaging); ``limit_price`` for LMT orders."""

    conid: int
    side: str
    quantity: float | None = None
    cash_quantity: float | None = None
    order_type: str = "MKT"
    limit_price: float | None = None
    tif: str = "DAY"
    coid: str | None = None

    def validate(self) -> None:
        """Raise :class:`IbkrConfigError` naming the field, before anything is sent."""
        if not isinstance(self.conid, int) or self.conid <= 0:
            raise IbkrValidationError(
                "conid", f"{self.conid!r} is not an IBKR contract id (a positive integer)"
            )
        if self.side not in ("BUY", "SELL"):
            raise IbkrValidationError("side", f"{self.side!r} must be BUY or SELL")
        if self.order_type not in ("MKT", "LMT"):
            raise IbkrValidationError("order_type", f"{self.order_type!r} is not supported; use MKT or LMT")
        if (self.quantity is None) == (self.cash_quantity is None):
            raise IbkrValidationError("quantity", "give exactly one of quantity and cash_quantity")
        amount = self.quantity if self.quantity is not None else self.cash_quantity
        if amount is None or amount <= 0:
            raise IbkrValidationError("quantity", "must be positive")
        if self.order_type == "LMT" and (self.limit_price is None or self.limit_price <= 0):
            raise IbkrValidationError("limit_price", "a LMT order needs a positive limit_price")
        if self.order_type == "MKT" and self.limit_price is not None:
            raise IbkrValidationError("limit_price", "a MKT order takes no limit_price; use order_type LMT")
        if self.tif not in ("DAY", "GTC", "IOC", "OPG"):
            raise IbkrValidationError(
                "tif", f"{self.tif!r} is not a time in force IBKR accepts (DAY, GTC, IOC, OPG)"
            )

    def to_json(self, account_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "acctId": account_id,
            "conid": self.conid,
            "side": self.side,
            "orderType": self.order_type,
            "tif": self.tif,
        }
        if self.quantity is not None:
            body["quantity"] = self.quantity
        if self.cash_quantity is not None:
            body["cashQty"] = self.cash_quantity
        if self.limit_price is not None:
            body["price"] = self.limit_price
        if self.coid:
            body["cOID"] = self.coid
        return body


@dataclass(frozen=True)
class WhatIf:
    """``/orders/whatif``: the order's value, commission and margin impact, before placing."""

    amount: float | None
    commission: float | None
    total: float | None
    equity_after: float | None
    initial_margin_change: float | None
    warning: str | None
    error: str | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, payload: Any) -> WhatIf:
        if not isinstance(payload, Mapping):
            raise IbkrResponseError("the what-if answer is not a JSON object")

        def part(name: str, key: str) -> float | None:
            section = payload.get(name)
            return parse_money(section.get(key)) if isinstance(section, Mapping) else None

        return cls(
            amount=part("amount", "amount"),
            commission=part("amount", "commission"),
            total=part("amount", "total"),
            equity_after=part("equity", "after"),
            initial_margin_change=part("initial", "change"),
            warning=payload.get("warn"),
            error=payload.get("error"),
            raw=payload,
        )

    def summary(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "commission": self.commission,
            "total": self.total,
            "equity_after": self.equity_after,
            "initial_margin_change": self.initial_margin_change,
            "warning": self.warning,
        }


@dataclass(frozen=True)
class LiveOrder:
    """A row of ``/iserver/account/orders``."""

    order_id: str
    account_id: str
    conid: int | None
    status: str
    side: str | None
    filled: float
    remaining: float
    average_price: float | None
    coid: str | None
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, row: Any) -> LiveOrder:
        if not isinstance(row, Mapping) or row.get("orderId") is None:
            raise IbkrResponseError("an order row lacks 'orderId'")
        return cls(
            order_id=str(row["orderId"]),
            account_id=str(row.get("acct") or row.get("account") or ""),
            conid=int(row["conid"]) if row.get("conid") is not None else None,
            status=str(row.get("status") or ""),
            side=row.get("side"),
            filled=float(row.get("filledQuantity") or 0),
            remaining=float(row.get("remainingQuantity") or 0),
            average_price=parse_money(row.get("avgPrice")),
            coid=row.get("order_ref"),
            raw=row,
        )


@dataclass(frozen=True)
class PlacedOrder:
    """The outcome of :meth:`OrderService.place`; ``adopted`` means an earlier attempt had
    already placed it (same cOID) and nothing new was sent."""

    order_id: str
    status: str
    coid: str | None
    adopted: bool
    confirmed_message_ids: tuple[str, ...] = ()


class OrderService:
    """Order endpoints of one client (``client.orders``)."""

    def __init__(self, client: IbkrClient) -> None:
        self._client = client

    def whatif(self, account_id: str, ticket: OrderTicket) -> WhatIf:
        """Preview an order with IBKR's what-if (nothing is placed)."""
        ticket.validate()
        self._client.brokerage_accounts()  # IBKR's pre-flight for order endpoints
        body = {"orders": [ticket.to_json(account_id)]}
        return WhatIf.from_json(
            self._client.request("POST", f"/iserver/account/{account_id}/orders/whatif", json=body)
        )

    def live_orders(self) -> list[LiveOrder]:
        """``GET /iserver/account/orders`` (IBKR paces it at 1 per 5 s)."""
        self._client.brokerage_accounts()
        payload = self._client.request("GET", "/iserver/account/orders")
        rows = payload.get("orders") if isinstance(payload, Mapping) else None
        if not isinstance(rows, list):
            raise IbkrResponseError("/iserver/account/orders answered without an 'orders' list")
        return [LiveOrder.from_json(row) for row in rows]

    def find_by_coid(self, account_id: str, coid: str) -> LiveOrder | None:
        for order in self.live_orders():
            if order.coid == coid and (not order.account_id or order.account_id == account_id):
                return order
        return None

    def status(self, order_id: str) -> Mapping[str, Any]:
        """``GET /iserver/account/order/status/{orderId}``."""
        self._client.brokerage_accounts()
        payload = self._client.request("GET", f"/iserver/account/order/status/{order_id}")
        if not isinstance(payload, Mapping):
            raise IbkrResponseError("order status is not a JSON object")
        return payload

    def cancel(self, account_id: str, order_id: str) -> Mapping[str, Any]:
        """``DELETE /iserver/account/{accountId}/order/{orderId}``: IBKR acknowledges the request;
        poll the status for the cancellation itself."""
        self._client.brokerage_accounts()
        payload = self._client.request("DELETE", f"/iserver/account/{account_id}/order/{order_id}")
        if not isinstance(payload, Mapping):
            raise IbkrResponseError("the cancel answer is not a JSON object")
        if payload.get("error"):
            raise IbkrOrderError(
                f"IBKR refused to cancel order {order_id}: {payload['error']}",
                ibkr_error=str(payload["error"]),
            )
        return payload

    def place(
        self, account_id: str, ticket: OrderTicket, *, allowed_message_ids: Collection[str] = ()
    ) -> PlacedOrder:
        """Place one order safely (see the module docstring). Returns once IBKR acknowledged it."""
        ticket.validate()
        client = self._client
        client.brokerage_accounts()
        with client.store.lock(f"{client.session_key}-orders", timeout=ORDER_QUEUE_SECONDS):
            if ticket.coid:
                existing = self.find_by_coid(account_id, ticket.coid)
                if existing is not None:
                    log.warning(
                        "order with cOID %s already exists (id %s): adopting it",
                        ticket.coid,
                        existing.order_id,
                    )
                    return PlacedOrder(existing.order_id, existing.status, ticket.coid, adopted=True)
            answer = client.request(
                "POST", f"/iserver/account/{account_id}/orders", json={"orders": [ticket.to_json(account_id)]}
            )
            confirmed: list[str] = []
            for _ in range(MAX_PROMPT_ROUNDS):
                if isinstance(answer, Mapping) and answer.get("error"):
                    text = str(answer["error"])
                    if ticket.coid and "already registered" in text:
                        existing = self.find_by_coid(account_id, ticket.coid)
                        if existing is not None:
                            return PlacedOrder(existing.order_id, existing.status, ticket.coid, adopted=True)
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
                        str(first.get("order_status") or ""),
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

    def _answer_prompt(
        self, prompt: Mapping[str, Any], allowed: Collection[str], confirmed: list[str]
    ) -> Any:
        reply_id = str(prompt["id"])
        message_ids = [str(m) for m in prompt.get("messageIds") or []]
        text = " ".join(str(m) for m in prompt.get("message") or []).strip()
        if message_ids and all(m in allowed for m in message_ids):
            log.info("confirming IBKR prompt %s (allowed): %s", message_ids, text)
            confirmed.extend(message_ids)
            return self._client.request("POST", f"/iserver/reply/{reply_id}", json={"confirmed": True})
        self._client.request("POST", f"/iserver/reply/{reply_id}", json={"confirmed": False})
        raise IbkrOrderRefusedError(
            f"IBKR asked for confirmation {message_ids or '(no message id)'}: {text!r}. It is not in "
            "allowed_message_ids, so it was declined and no order was placed; add the id to "
            "allowed_message_ids if this prompt is expected.",
            ibkr_error=text,
            code=IbkrErrorCode.PROMPT_DECLINED,
        )
