"""The checks between a person's order and IBKR, all made before anything is sent: the ticket
from what was typed, the live-account guard, the ``max_quantity``/``max_notional`` caps, and the
cOID that makes a retried task adopt its order instead of placing it twice.

Amounts are :class:`~decimal.Decimal` from the operator's arguments to IBKR's JSON (a cap of
5000 refuses 5000.01). Plain Python over the client, so the rules are unit-testable; the
operator (:mod:`ibkr_provider.operators.orders`) calls them in order.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ibkr_provider.client import fields
from ibkr_provider.client.errors import (
    IbkrErrorCode,
    IbkrOrderError,
    IbkrOrderRefusedError,
    IbkrValidationError,
)
from ibkr_provider.client.models.numbers import as_text

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient
    from ibkr_provider.client.models.orders import OrderTicket
from ibkr_provider.client.models.whatif import WhatIf


def order_coid(dag_id: str, task_id: str, run_id: str, map_index: int) -> str:
    """A cOID unique to one task instance and stable across its retries (IBKR keeps cOIDs
    unique for a day), so a retry finds and adopts the order instead of placing it again."""
    digest = hashlib.sha256(f"{dag_id}\x1f{task_id}\x1f{run_id}\x1f{map_index}".encode()).hexdigest()
    return f"af-{digest[:28]}"


def amount(field: str, value: Any, *, positive: bool = True) -> Decimal | None:
    """An optional amount (quantity, price, cap) as an exact Decimal; None for None or ""."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    parsed = fields.decimal(field, value)
    if positive and parsed <= 0:
        raise IbkrValidationError(field, f"must be positive (got {as_text(parsed)})")
    return parsed


def ticket_of(
    *,
    conid: Any,
    side: Any,
    quantity: Any,
    cash_quantity: Any,
    order_type: Any,
    limit_price: Any,
    tif: Any,
    coid: str | None,
) -> OrderTicket:
    """The validated ticket from what a person typed (or a template rendered), or an error
    naming the field."""
    from ibkr_provider.client.models.orders import OrderTicket

    if isinstance(conid, bool):
        raise IbkrValidationError("conid", f"{conid!r} is not an IBKR contract id")
    try:
        contract = int(conid)
    except (TypeError, ValueError):
        raise IbkrValidationError("conid", f"{conid!r} is not an IBKR contract id") from None
    ticket = OrderTicket(
        conid=contract,
        side=str(side).upper(),
        quantity=amount("quantity", quantity),
        cash_quantity=amount("cash_quantity", cash_quantity),
        order_type=str(order_type).upper(),
        limit_price=amount("limit_price", limit_price),
        tif=str(tif).upper(),
        coid=coid,
    )
    ticket.validate()
    return ticket


def refuse_unless_allowed(account_id: str, *, live: bool, dry_run: bool, allow_live: bool) -> None:
    """A live account (one IBKR does not report as paper) takes a real order only with
    ``allow_live=True`` as well as ``dry_run=False``."""
    if live and not dry_run and not allow_live:
        raise IbkrOrderRefusedError(
            f"IBKR does not report {account_id} as a paper account, so it is treated as live: "
            "refusing to place a real order without allow_live=True (and dry_run=False). "
            "Nothing was sent.",
            code=IbkrErrorCode.LIVE_NOT_ALLOWED,
        )


def preview(client: IbkrClient, account_id: str, ticket: OrderTicket, what: str) -> WhatIf:
    """IBKR's what-if of ``ticket`` (commission, margin, IBKR's warnings); an order the what-if
    rejects fails here, before anything is placed."""
    whatif = client.orders.whatif(account_id, ticket)
    if whatif.error:
        raise IbkrOrderError(
            f"IBKR's what-if rejected {what}: {whatif.error}. Nothing was placed.",
            ibkr_error=whatif.error,
            code=IbkrErrorCode.REJECTED,
        )
    return whatif


def check_quantity(client: IbkrClient, ticket: OrderTicket, max_quantity: Decimal | None) -> None:
    """``max_quantity`` for both order forms: a cash-quantity order's share count is its cash
    over IBKR's last price (refused when IBKR gives no price: the cap must not be skipped)."""
    if max_quantity is None:
        return
    if ticket.quantity is not None:
        shares, how = ticket.quantity, ""
    else:
        cash = ticket.cash_quantity or Decimal(0)
        quote = client.market_data.snapshot([ticket.conid]).get(ticket.conid)
        last = quote.last if quote is not None else None
        if last is None or last <= 0:
            raise IbkrOrderRefusedError(
                f"max_quantity {as_text(max_quantity)} cannot be checked for a cash-quantity order: "
                f"IBKR gave no last price for conid {ticket.conid}. Nothing was sent.",
                code=IbkrErrorCode.CAP_UNCHECKABLE,
            )
        shares = cash / last
        how = f" (cash_quantity {as_text(cash)} at IBKR's last price {last})"
    if shares > max_quantity:
        raise IbkrOrderRefusedError(
            f"quantity {shares:.6g}{how} exceeds max_quantity {as_text(max_quantity)}. Nothing was sent.",
            code=IbkrErrorCode.CAP_EXCEEDED,
        )


def check_notional(ticket: OrderTicket, whatif: WhatIf, max_notional: Decimal | None) -> None:
    """Refuse an order over ``max_notional``, or whose notional neither the ticket (cash
    quantity) nor IBKR's what-if states (a cap that cannot be checked must not wave the order
    through)."""
    if max_notional is None:
        return
    if ticket.cash_quantity is not None and ticket.cash_quantity > max_notional:
        raise IbkrOrderRefusedError(
            f"cash_quantity {ticket.cash_quantity:,.2f} exceeds max_notional {max_notional:,.2f}. "
            "Nothing was placed.",
            code=IbkrErrorCode.CAP_EXCEEDED,
        )
    if whatif.amount is None:
        shown = str(whatif.raw.get("amount"))[:200]
        raise IbkrOrderRefusedError(
            f"max_notional {max_notional:,.2f} cannot be checked: IBKR's what-if gave no order "
            f"amount (its 'amount' section: {shown}). Refusing the order; nothing was placed.",
            code=IbkrErrorCode.CAP_UNCHECKABLE,
        )
    if whatif.amount > max_notional:
        raise IbkrOrderRefusedError(
            f"the order is worth {whatif.amount:,.2f} (IBKR what-if), over max_notional "
            f"{max_notional:,.2f}. Nothing was placed.",
            code=IbkrErrorCode.CAP_EXCEEDED,
        )
