"""Journal entries built from what the provider did: a placed order (with its ticket and IBKR's
what-if), so every writer describes an event the same way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ibkr_provider.client.models.numbers import as_text
from ibkr_provider.client.models.orders import OrderTicket, PlacedOrder
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
