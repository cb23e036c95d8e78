"""An order as the sandbox keeps it, the prompts that may stand before it, and the shapes IBKR
shows it in: a live order (``/iserver/account/orders``) and an execution
(``/iserver/account/trades``, the websocket's ``str`` topic)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ibkr_sandbox.seed import SeedBook

TERMINAL = {"Filled", "Cancelled", "Inactive", "Rejected"}


class OrderRejected(Exception):
    """The order is invalid; ``text`` is IBKR-style error text."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass
class PromptRule:
    """A confirmation prompt: ``when`` is ``always``, ``market`` (MKT orders) or
    ``notional_over`` (order value above ``threshold``)."""

    message_id: str
    text: str
    when: str = "always"
    threshold: float = 0.0

    def applies(self, order: dict[str, Any], notional: float) -> bool:
        if self.when == "market":
            return bool(order["orderType"] == "MKT")
        if self.when == "notional_over":
            return bool(notional > self.threshold)
        return True


@dataclass
class SandboxOrder:
    order_id: int
    account: str
    conid: int
    side: str
    order_type: str
    quantity: float
    limit_price: float | None
    tif: str
    coid: str | None
    status: str = "Submitted"
    filled: float = 0.0
    avg_price: float | None = None
    created_at: float = field(default_factory=time.time)

    def as_live_order(self, book: SeedBook) -> dict[str, Any]:
        inst = book.instruments[self.conid]
        return {
            "acct": self.account,
            "account": self.account,
            "conid": self.conid,
            "conidex": str(self.conid),
            "orderId": self.order_id,
            "cashCcy": "USD",
            "sizeAndFills": f"{self.filled:g}/{self.quantity:g}",
            "orderDesc": f"{self.side.title()} {self.quantity:g} {inst.symbol} {self.order_type}",
            "description1": inst.symbol,
            "ticker": inst.symbol,
            "secType": inst.asset_class,
            "listingExchange": inst.exchange,
            "remainingQuantity": self.quantity - self.filled,
            "filledQuantity": self.filled,
            "totalSize": self.quantity,
            "companyName": inst.name,
            "status": self.status,
            "order_ccp_status": self.status,
            "avgPrice": f"{self.avg_price:.4f}" if self.avg_price is not None else None,
            "price": f"{self.limit_price}" if self.limit_price is not None else None,
            "origOrderType": "MARKET" if self.order_type == "MKT" else "LIMIT",
            "orderType": "Market" if self.order_type == "MKT" else "Limit",
            "timeInForce": self.tif,
            "side": self.side,
            "order_ref": self.coid,
            "lastExecutionTime_r": int(self.created_at * 1000),
        }

    def as_execution(self, book: SeedBook) -> dict[str, Any]:
        """The order's fill as one execution, the shape ``/iserver/account/trades`` and the
        websocket's ``str`` topic send."""
        inst = book.instruments[self.conid]
        verb = "Bot" if self.side == "BUY" else "Sold"
        return {
            "execution_id": f"0000e0d5.{self.order_id:08x}.01.01",
            "symbol": inst.symbol,
            "side": self.side[0],
            "order_description": f"{verb} {self.filled:g} @ {self.avg_price}",
            "trade_time_r": int(self.created_at * 1000),
            "size": self.filled,
            "price": f"{self.avg_price}",
            "order_ref": self.coid,
            "commission": "1.00",
            "net_amount": round(self.filled * (self.avg_price or 0), 2),
            "account": self.account,
            "conid": str(self.conid),
            "sec_type": inst.asset_class,
            "listing_exchange": inst.exchange,
            "company_name": inst.name,
        }


@dataclass
class PendingReply:
    #: the username whose brokerage session holds the question
    owner: str
    account: str
    orders: list[dict[str, Any]]
    prompts: list[PromptRule]
