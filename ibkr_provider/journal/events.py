"""Journal entries built from what the provider did and saw: a placed order (with its ticket and
IBKR's what-if), the state it ended in and its fills, so every writer describes an event the same
way."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from ibkr_provider.client.errors import IbkrErrorCode, IbkrResponseError
from ibkr_provider.client.models.executions import Execution
from ibkr_provider.client.models.numbers import as_text
from ibkr_provider.client.models.orders import OrderStatus, OrderTicket, PlacedOrder
from ibkr_provider.journal.entries import EntryKind, JournalEntry, RunRef


def order_entry(
    run: RunRef,
    account_id: str,
    ticket: OrderTicket,
    placed: PlacedOrder,
    *,
    symbol: str | None,
    whatif: Mapping[str, Any],
) -> JournalEntry:
    """The order IBKR acknowledged (or the one an earlier attempt placed, adopted by cOID: the
    same event, so the same row)."""
    side = str(getattr(ticket.side, "value", ticket.side))
    return JournalEntry(
        EntryKind.ORDER,
        run,
        subject=placed.coid or f"order:{placed.order_id}",
        account_id=account_id,
        coid=placed.coid,
        order_id=placed.order_id,
        symbol=symbol,
        side=side,
        quantity=as_text(ticket.quantity) if ticket.quantity is not None else None,
        price=as_text(ticket.limit_price),
        payload={
            "ticket": ticket.to_json(account_id),
            "cash_quantity": as_text(ticket.cash_quantity),
            "status": placed.status.value,
            "adopted": placed.adopted,
            "confirmed_message_ids": list(placed.confirmed_message_ids),
            "whatif": dict(whatif),
        },
    )


def status_entry(run: RunRef, status: OrderStatus) -> JournalEntry:
    """The state an order ended in (one row per order and state)."""
    subject = f"{status.coid or 'order:' + status.order_id}:{status.status_text}"
    return JournalEntry(
        EntryKind.STATUS,
        run,
        subject=subject,
        account_id=status.account_id or "",
        coid=status.coid,
        order_id=status.order_id,
        quantity=str(status.filled),
        price=as_text(status.average_price),
        payload={"status": status.status_text, "filled": status.filled, "size": status.size},
    )


def fill_entries(run: RunRef, status: OrderStatus, executions: Iterable[Execution]) -> list[JournalEntry]:
    """The order's executions, one row each (keyed by IBKR's execution id).

    IBKR names an execution's order by its cOID; the executions found must add up to what the
    order status says is filled, else the report is partial (IBKR lists fills with a delay) and
    this is an error to retry, never a shorter journal.
    """
    mine = [e for e in executions if status.coid and e.coid == status.coid]
    found = sum((e.size for e in mine), Decimal(0))
    if found != Decimal(str(status.filled)):
        raise IbkrResponseError(
            f"IBKR reports order {status.order_id} (cOID {status.coid}) filled {status.filled}, but "
            f"/iserver/account/trades lists {found} in {len(mine)} execution(s) yet; a retry journals "
            "its fills",
            code=IbkrErrorCode.FILLS_NOT_LISTED,
        )
    return [
        JournalEntry(
            EntryKind.FILL,
            run,
            subject=e.execution_id,
            account_id=e.account_id or status.account_id or "",
            coid=e.coid,
            order_id=status.order_id,
            symbol=e.symbol,
            side=e.side,
            quantity=as_text(e.size),
            price=as_text(e.price),
            commission=as_text(e.commission),
            payload=e.summary(),
        )
        for e in mine
    ]


def execution_entry(run: RunRef, execution: Mapping[str, Any]) -> JournalEntry:
    """A fill as an event trigger reported it (:meth:`Execution.summary` as JSON): one row per
    execution id, however many runs it was delivered to (event triggers deliver at least once)."""
    return JournalEntry(
        EntryKind.FILL,
        run,
        subject=str(execution["execution_id"]),
        account_id=str(execution.get("account_id") or ""),
        coid=execution.get("coid"),
        symbol=execution.get("symbol"),
        side=execution.get("side"),
        quantity=execution.get("size"),
        price=execution.get("price"),
        commission=execution.get("commission"),
        payload=dict(execution),
        scope="execution",
    )
