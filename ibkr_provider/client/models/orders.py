"""Typed orders: what the caller asks for (:class:`OrderTicket`) and what IBKR answers
(:class:`LiveOrder`, :class:`OrderStatus`, :class:`PlacedOrder`; the what-if is
:mod:`ibkr_provider.client.models.whatif`).

Field names and values follow IBKR's order endpoints (Web API documentation, Orders:
``POST /iserver/account/{accountId}/orders``, ``.../orders/whatif``,
``GET /iserver/account/orders``, ``GET /iserver/account/order/status/{orderId}``).
Money and prices are :class:`~decimal.Decimal`; quantities are floats.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ibkr_provider.client.errors import IbkrResponseError, IbkrValidationError
from ibkr_provider.client.fields import decimal
from ibkr_provider.client.models._json import optional_int, optional_text
from ibkr_provider.client.models.numbers import amount_of, as_text, json_number, quantity_of


class OrderSide(str, enum.Enum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(str, enum.Enum):
    """The order types this provider places (IBKR knows more; they are not offered yet)."""

    MARKET = "MKT"
    LIMIT = "LMT"


class TimeInForce(str, enum.Enum):
    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"
    OPG = "OPG"


class OrderState(str, enum.Enum):
    """IBKR's order status text; ``UNKNOWN`` for any text IBKR adds later."""

    PENDING_SUBMIT = "PendingSubmit"
    PENDING_CANCEL = "PendingCancel"
    PRE_SUBMITTED = "PreSubmitted"
    SUBMITTED = "Submitted"
    FILLED = "Filled"
    CANCELLED = "Cancelled"
    API_CANCELLED = "ApiCancelled"
    INACTIVE = "Inactive"
    REJECTED = "Rejected"
    UNKNOWN = "Unknown"

    @classmethod
    def parse(cls, text: Any) -> OrderState:
        try:
            return cls(str(text or ""))
        except ValueError:
            return cls.UNKNOWN

    @property
    def terminal(self) -> bool:
        """The order will not change any more."""
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        OrderState.FILLED,
        OrderState.CANCELLED,
        OrderState.API_CANCELLED,
        OrderState.INACTIVE,
        OrderState.REJECTED,
    }
)


def _choice(enum_type: type[enum.Enum], value: Any) -> Any:
    """``value`` as a member of ``enum_type`` if it names one, else unchanged (validate() then
    rejects it with the field's name)."""
    try:
        return enum_type(str(getattr(value, "value", value)).upper())
    except ValueError:
        return value


@dataclass(frozen=True)
class OrderTicket:
    """An order as the caller means it. ``quantity`` or ``cash_quantity`` (a cash-quantity order,
    e.g. for dollar-cost averaging); ``limit_price`` for LMT orders. Strings such as ``"BUY"`` are
    accepted for the enum fields."""

    conid: int
    side: OrderSide | str
    quantity: Decimal | None = None
    cash_quantity: Decimal | None = None
    order_type: OrderType | str = OrderType.MARKET
    limit_price: Decimal | None = None
    tif: TimeInForce | str = TimeInForce.DAY
    coid: str | None = None

    def __post_init__(self) -> None:
        # Amounts are exact from here to IBKR's JSON: an int, float or numeric string given by
        # a caller becomes the Decimal it spells (a float by its shortest repr: 0.1 is 0.1).
        for name in ("quantity", "cash_quantity", "limit_price"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Decimal):
                object.__setattr__(self, name, decimal(name, value))
        object.__setattr__(self, "side", _choice(OrderSide, self.side))
        object.__setattr__(self, "order_type", _choice(OrderType, self.order_type))
        object.__setattr__(self, "tif", _choice(TimeInForce, self.tif))

    def validate(self) -> None:
        """Raise :class:`IbkrValidationError` naming the field, before anything is sent."""
        if not isinstance(self.conid, int) or isinstance(self.conid, bool) or self.conid <= 0:
            raise IbkrValidationError(
                "conid", f"{self.conid!r} is not an IBKR contract id (a positive integer)"
            )
        if not isinstance(self.side, OrderSide):
            raise IbkrValidationError("side", f"{self.side!r} must be BUY or SELL")
        if not isinstance(self.order_type, OrderType):
            raise IbkrValidationError("order_type", f"{self.order_type!r} is not supported; use MKT or LMT")
        if (self.quantity is None) == (self.cash_quantity is None):
            raise IbkrValidationError("quantity", "give exactly one of quantity and cash_quantity")
        for name in ("quantity", "cash_quantity", "limit_price"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise IbkrValidationError(name, f"must be positive (got {as_text(value)})")
        if self.order_type is OrderType.LIMIT and self.limit_price is None:
            raise IbkrValidationError("limit_price", "a LMT order needs a positive limit_price")
        if self.order_type is OrderType.MARKET and self.limit_price is not None:
            raise IbkrValidationError("limit_price", "a MKT order takes no limit_price; use order_type LMT")
        if not isinstance(self.tif, TimeInForce):
            raise IbkrValidationError(
                "tif", f"{self.tif!r} is not a time in force IBKR accepts (DAY, GTC, IOC, OPG)"
            )

    def to_json(self, account_id: str) -> dict[str, Any]:
        """The order object IBKR's order endpoints take."""
        body: dict[str, Any] = {
            "acctId": account_id,
            "conid": self.conid,
            "side": str(getattr(self.side, "value", self.side)),
            "orderType": str(getattr(self.order_type, "value", self.order_type)),
            "tif": str(getattr(self.tif, "value", self.tif)),
        }
        if self.quantity is not None:
            body["quantity"] = json_number(self.quantity)
        if self.cash_quantity is not None:
            body["cashQty"] = json_number(self.cash_quantity)
        if self.limit_price is not None:
            body["price"] = json_number(self.limit_price)
        if self.coid:
            body["cOID"] = self.coid
        return body


@dataclass(frozen=True)
class LiveOrder:
    """A row of ``GET /iserver/account/orders``."""

    order_id: str
    account_id: str
    conid: int | None
    status: OrderState
    side: OrderSide | None
    filled: float
    remaining: float
    average_price: Decimal | None
    coid: str | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, row: Any) -> LiveOrder:
        if not isinstance(row, Mapping) or row.get("orderId") is None:
            raise IbkrResponseError("an order row lacks 'orderId'")
        side = _choice(OrderSide, row.get("side") or "")
        return cls(
            order_id=str(row["orderId"]),
            account_id=str(row.get("acct") or row.get("account") or ""),
            conid=optional_int(row, "conid", "an order row"),
            status=OrderState.parse(row.get("status")),
            side=side if isinstance(side, OrderSide) else None,
            filled=quantity_of(row.get("filledQuantity")) or 0.0,
            remaining=quantity_of(row.get("remainingQuantity")) or 0.0,
            average_price=amount_of(row.get("avgPrice")),
            coid=optional_text(row, "order_ref", "an order row"),
            raw=row,
        )


@dataclass(frozen=True)
class OrderStatus:
    """``GET /iserver/account/order/status/{orderId}``: one order's state and fill."""

    order_id: str
    status: OrderState
    #: IBKR's status text as sent (``status`` is UNKNOWN for text this provider does not know).
    status_text: str
    filled: float
    size: float | None
    average_price: Decimal | None
    conid: int | None
    account_id: str | None
    coid: str | None
    raw: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, order_id: str, payload: Any) -> OrderStatus:
        if not isinstance(payload, Mapping):
            raise IbkrResponseError("order status is not a JSON object")
        text = str(payload.get("order_status") or "")
        return cls(
            order_id=str(payload.get("order_id") or order_id),
            status=OrderState.parse(text),
            status_text=text,
            filled=quantity_of(payload.get("cum_fill")) or 0.0,
            size=quantity_of(payload.get("size")),
            average_price=amount_of(payload.get("average_price")),
            conid=optional_int(payload, "conid", "order status"),
            account_id=optional_text(payload, "account", "order status"),
            coid=optional_text(payload, "order_ref", "order status"),
            raw=payload,
        )

    def summary(self) -> dict[str, Any]:
        """JSON-ready outcome (for XCom and trigger events)."""
        return {"order_id": self.order_id, "order_status": self.status_text, "filled": self.filled}


@dataclass(frozen=True)
class PlacedOrder:
    """The outcome of :meth:`OrderService.place`; ``adopted`` means an earlier attempt had
    already placed it (same cOID) and nothing new was sent."""

    order_id: str
    status: OrderState
    coid: str | None
    adopted: bool
    confirmed_message_ids: tuple[str, ...] = ()
    #: How long the placement waited for the orders queued before it (the placement lock): a
    #: retry after a killed worker waits out that worker's lease here.
    lock_wait_seconds: float = 0.0
