"""Messages of IBKR's websocket (``/v1/api/ws``), typed.

Server messages are JSON text frames with a ``topic``: ``sor`` (live orders: ``args`` is a list
of rows shaped as ``GET /iserver/account/orders``), ``str`` (executions: ``args`` is a list of
rows shaped as ``GET /iserver/account/trades``), ``smd+CONID`` (market data: the requested field
ids as keys, 31 last, 84 bid, 86 ask), ``spl`` (profit and loss: ``args`` keyed ``<account>.Core``,
each row shaped as ``GET /iserver/account/pnl/partitioned``'s: ``dpl`` daily PnL, ``nl`` net
liquidation, ``upl``, ``el``, ``mv``), ``system`` (a heartbeat ``hb``, or ``success`` with the
user name once authenticated), ``sts`` (authentication status), and ``act``/``blt``/``ntf``/
``tic`` (accounts, bulletins, notifications, the answer to ``tic``). Before authentication the
socket may say ``{"message": "waiting for session"}``. A frame that is not a JSON object is an
:class:`~ibkr_provider.client.errors.IbkrResponseError`: the stream cannot be trusted after it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ibkr_provider.client.errors import IbkrResponseError
from ibkr_provider.client.models.executions import Execution
from ibkr_provider.client.models.numbers import to_decimal
from ibkr_provider.client.models.orders import LiveOrder
from ibkr_provider.client.models.portfolio import PnlRow


@dataclass(frozen=True)
class OrderUpdates:
    """``sor``: orders whose state changed (or all live ones, right after subscribing)."""

    orders: tuple[LiveOrder, ...]


@dataclass(frozen=True)
class Trades:
    """``str``: executions (IBKR replays those of the last 7 days on subscribe)."""

    executions: tuple[Execution, ...]


@dataclass(frozen=True)
class MarketTick:
    """``smd+CONID``: the fields that changed (``None`` for one not in this tick)."""

    conid: int
    last: Decimal | None
    bid: Decimal | None
    ask: Decimal | None
    updated_ms: int | None


@dataclass(frozen=True)
class PnlUpdate:
    """``spl``: the accounts whose profit and loss changed (all of them right after subscribing)."""

    rows: Mapping[str, PnlRow]


@dataclass(frozen=True)
class Heartbeat:
    """``system`` with ``hb``: the server's heartbeat (epoch milliseconds)."""

    at_ms: int


@dataclass(frozen=True)
class Notice:
    """Anything else: authentication status, the user name, accounts, bulletins, ``tic``'s
    answer, ``waiting for session``; ``topic`` is ``message`` for the topic-less ones."""

    topic: str
    payload: Mapping[str, Any] = field(repr=False)

    @property
    def authenticated(self) -> bool | None:
        if self.topic == "sts":
            return bool((self.payload.get("args") or {}).get("authenticated"))
        if self.topic == "system" and self.payload.get("success"):
            return True
        return None


StreamMessage = OrderUpdates | Trades | MarketTick | PnlUpdate | Heartbeat | Notice


def parse_message(text: str | bytes) -> StreamMessage:
    """One websocket frame as a typed message."""
    try:
        payload = json.loads(text)
    except ValueError:
        raise IbkrResponseError(
            f"the IBKR websocket sent a frame that is not JSON: {str(text)[:80]!r}"
        ) from None
    if not isinstance(payload, Mapping):
        raise IbkrResponseError(f"the IBKR websocket sent JSON that is not an object: {str(text)[:80]!r}")
    topic = str(payload.get("topic") or "")
    if topic == "sor":
        return OrderUpdates(tuple(LiveOrder.from_json(row) for row in payload.get("args") or []))
    if topic == "str":
        return Trades(tuple(Execution.from_json(row) for row in payload.get("args") or []))
    if topic.startswith("smd+"):
        conid = payload.get("conid") or topic[4:]
        updated = payload.get("_updated")
        return MarketTick(
            conid=int(str(conid).split("@")[0]),
            last=to_decimal(payload.get("31")),
            bid=to_decimal(payload.get("84")),
            ask=to_decimal(payload.get("86")),
            updated_ms=int(updated) if updated is not None else None,
        )
    if topic == "spl":
        args = payload.get("args")
        return PnlUpdate(PnlRow.rows_of(args if isinstance(args, Mapping) else {}))
    if topic == "system" and payload.get("hb") is not None:
        return Heartbeat(int(payload["hb"]))
    return Notice(topic or "message", payload)
