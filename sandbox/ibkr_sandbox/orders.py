"""The sandbox's order book: what-if, placement with confirmation prompts, fills, status, cancel.

Shapes follow IBKR's Web API documentation (Orders) and its OpenAPI document 2.15. All three
placement answers are HTTP 200, as IBKR's are: an accepted order
(``[{"order_id", "order_status", "encrypt_message"}]``), a question
(``[{"id", "message", "isSuppressed", "messageIds"}]``) or an error object (``{"error": ...}``,
e.g. a duplicate ``cOID``). Which orders trigger which prompt is
configured with ``prompt_rules`` (``POST /__sandbox__/config``).
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any

from ibkr_sandbox.order_records import TERMINAL, OrderRejected, PendingReply, PromptRule, SandboxOrder
from ibkr_sandbox.seed import SeedBook, SeedPosition


@dataclass
class OrderBook:
    """Orders, pending replies and counters of one sandbox."""

    orders: dict[int, SandboxOrder] = field(default_factory=dict)
    replies: dict[str, PendingReply] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1_000_001))

    def next_ids(self, start: int) -> None:
        """Number new orders from ``start`` on (after a restart, past the orders kept)."""
        self._ids = itertools.count(start)

    # ------------------------------------------------------------------ validation
    @staticmethod
    def normalise(book: SeedBook, account: str, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise OrderRejected("Bad Request: each order must be a JSON object")
        try:
            conid = int(raw["conid"])
        except (KeyError, TypeError, ValueError):
            raise OrderRejected("Bad Request: conid is required") from None
        if conid not in book.instruments:
            raise OrderRejected(f"Bad Request: Contract {conid} not found")
        side = str(raw.get("side", "")).upper()
        if side not in {"BUY", "SELL"}:
            raise OrderRejected("Bad Request: side must be BUY or SELL")
        order_type = str(raw.get("orderType", ""))
        if order_type not in {"MKT", "LMT"}:
            raise OrderRejected(f"Bad Request: orderType {order_type!r} is not supported (MKT, LMT)")
        price = float(raw["price"]) if raw.get("price") is not None else None
        if order_type == "LMT" and (price is None or price <= 0):
            raise OrderRejected("Bad Request: a LMT order needs a positive price")
        last = book.instruments[conid].last_price
        if raw.get("cashQty") is not None:
            quantity = float(int(float(raw["cashQty"]) / (price or last)))
        else:
            quantity = float(raw.get("quantity") or 0)
        if quantity <= 0:
            raise OrderRejected("Bad Request: quantity must be positive")
        acct = raw.get("acctId")
        if acct is not None and acct != account:
            raise OrderRejected(f"Bad Request: acctId {acct} does not match the path account {account}")
        return {
            "conid": conid,
            "side": side,
            "orderType": order_type,
            "price": price,
            "quantity": quantity,
            "tif": str(raw.get("tif") or "DAY"),
            "cOID": raw.get("cOID"),
            "last": last,
        }

    # ------------------------------------------------------------------ flow
    def supersede_questions(self, owner: str) -> int:
        """Drop ``owner``'s open questions (a new order replaces them); returns how many.

        Models the race behind IBKR's ``reply id not found`` with concurrent orders (ibind
        issues #35, #103) as one open question per brokerage session: UNCONFIRMED, so it is the
        sandbox setting ``one_question_per_session``.
        """
        stale = [reply_id for reply_id, pending in self.replies.items() if pending.owner == owner]
        for reply_id in stale:
            del self.replies[reply_id]
        return len(stale)

    def submit(
        self, book: SeedBook, owner: str, account: str, raw_orders: list[Any], rules: list[PromptRule]
    ) -> list[dict[str, Any]] | dict[str, Any]:
        try:
            orders = [self.normalise(book, account, o) for o in raw_orders]
        except OrderRejected as exc:
            return {"error": exc.text}
        if not orders:
            return {"error": "Bad Request: no orders"}
        for order in orders:
            coid = order["cOID"]
            if coid and any(o.coid == coid and o.account == account for o in self.orders.values()):
                return {"error": f"Order couldn't be submitted: Local order ID={coid} is already registered"}
        notional = sum(o["quantity"] * (o["price"] or o["last"]) for o in orders)
        prompts = [rule for rule in rules if any(rule.applies(o, notional) for o in orders)]
        return self._next(book, owner, account, orders, prompts)

    def _next(
        self,
        book: SeedBook,
        owner: str,
        account: str,
        orders: list[dict[str, Any]],
        prompts: list[PromptRule],
    ) -> list[dict[str, Any]]:
        if prompts:
            reply_id = secrets.token_hex(16)
            reply_id = f"{reply_id[:8]}-{reply_id[8:12]}-{reply_id[12:16]}-{reply_id[16:20]}-{reply_id[20:]}"
            self.replies[reply_id] = PendingReply(owner, account, orders, prompts)
            rule = prompts[0]
            return [
                {
                    "id": reply_id,
                    "message": [rule.text],
                    "isSuppressed": False,
                    "messageIds": [rule.message_id],
                }
            ]
        return [self._place(book, account, order) for order in orders]

    def reply(self, book: SeedBook, reply_id: str, confirmed: bool) -> tuple[int, Any]:
        pending = self.replies.pop(reply_id, None)
        if pending is None:
            return 400, {"error": f"reply id not found: '{reply_id}'"}
        if not confirmed:
            return 200, {"error": "Order was not submitted: the confirmation was declined"}
        return 200, self._next(book, pending.owner, pending.account, pending.orders, pending.prompts[1:])

    def _place(self, book: SeedBook, account: str, order: dict[str, Any]) -> dict[str, Any]:
        placed = SandboxOrder(
            order_id=next(self._ids),
            account=account,
            conid=order["conid"],
            side=order["side"],
            order_type=order["orderType"],
            quantity=order["quantity"],
            limit_price=order["price"],
            tif=order["tif"],
            coid=order["cOID"],
        )
        self.orders[placed.order_id] = placed
        self.try_fill(book, placed)
        return {"order_id": str(placed.order_id), "order_status": placed.status, "encrypt_message": "1"}

    def try_fill(self, book: SeedBook, order: SandboxOrder) -> None:
        """Fill by the price model: MKT at once, LMT when the price is at or through the limit."""
        if order.status in TERMINAL:
            return
        price = book.instruments[order.conid].last_price
        marketable = order.order_type == "MKT" or (
            order.limit_price is not None
            and (price <= order.limit_price if order.side == "BUY" else price >= order.limit_price)
        )
        if not marketable:
            return
        order.status, order.filled, order.avg_price = "Filled", order.quantity, price
        account = book.accounts[order.account]
        signed = order.quantity if order.side == "BUY" else -order.quantity
        account.cash -= signed * price + 1.0  # 1 USD commission
        for position in account.positions:
            if position.conid == order.conid:
                total = position.quantity + signed
                if total and signed > 0:
                    position.avg_cost = (position.avg_cost * position.quantity + price * signed) / total
                position.quantity = total
                break
        else:
            account.positions.append(SeedPosition(order.conid, signed, price))
        account.positions = [p for p in account.positions if p.quantity]

    def cancel(self, account: str, order_id: int) -> dict[str, Any] | None:
        order = self.orders.get(order_id)
        if order is None or order.account != account:
            return None
        if order.status not in TERMINAL:
            order.status = "Cancelled"
        return {
            "msg": "Request was submitted",
            "order_id": order_id,
            "conid": order.conid,
            "account": account,
        }

    def whatif(
        self, book: SeedBook, account: str, raw_orders: list[Any], warn: str | None = None
    ) -> dict[str, Any]:
        try:
            orders = [self.normalise(book, account, o) for o in raw_orders]
        except OrderRejected as exc:
            return {"error": exc.text}
        amount = sum(o["quantity"] * (o["price"] or o["last"]) for o in orders)
        equity = book.accounts[account].cash + sum(
            book.instruments[p.conid].last_price * p.quantity for p in book.accounts[account].positions
        )

        def money(value: float) -> str:
            return f"{value:,.2f} USD"

        return {
            "amount": {
                "amount": money(amount),
                "commission": money(1.0 * len(orders)),
                "total": money(amount + len(orders)),
            },
            "equity": {
                "current": money(equity),
                "change": money(-1.0 * len(orders)),
                "after": money(equity - len(orders)),
            },
            "initial": {"current": "0.00 USD", "change": money(amount * 0.3), "after": money(amount * 0.3)},
            "maintenance": {
                "current": "0.00 USD",
                "change": money(amount * 0.25),
                "after": money(amount * 0.25),
            },
            "warn": warn,
            "error": None,
        }
