"""``IbkrPlaceOrderOperator``: place one order safely; a dry run unless told otherwise.

(``IbkrCancelOrderOperator`` lives in :mod:`ibkr_provider.operators.cancel`; importing it from
here keeps working.)
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier, BaseOperator, Context

from ibkr_provider.client import fields
from ibkr_provider.client.fields import flag
from ibkr_provider.failures import fail_fast
from ibkr_provider.hooks.ibkr import IbkrHook
from ibkr_provider.notifications import IbkrEvent, describe, notifier_list, notify
from ibkr_provider.operators.cancel import IbkrCancelOrderOperator
from ibkr_provider.workflows.order_guard import (
    amount,
    check_notional,
    check_quantity,
    order_coid,
    preview,
    refuse_unless_allowed,
    ticket_of,
)

__all__ = ["IbkrCancelOrderOperator", "IbkrPlaceOrderOperator"]

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient
    from ibkr_provider.client.models.orders import OrderTicket, PlacedOrder


class IbkrPlaceOrderOperator(BaseOperator):
    """Place an IBKR order, a what-if preview by default.

    Safety, in order, all before any order is sent:

    1. The ticket, the account id (letters then digits), the caps and the two switches are
       validated; bad input raises an error naming the field. ``dry_run`` and ``allow_live``
       accept only ``True``/``False`` or the words ``true``/``false``: anything else fails the
       task (a string such as ``"false"`` is truthy in Python and once sent a live order).
    2. ``max_quantity`` / ``max_notional`` caps apply to every order form. For a
       cash-quantity order the share count is estimated from IBKR's last price; the notional of
       a share-quantity order comes from IBKR's what-if. A cap that cannot be checked (no price,
       no what-if amount) refuses the order.
    3. ``dry_run=True`` (the default) stops after the what-if, logs and returns it.
    4. An account IBKR does not report as paper is live (:mod:`ibkr_provider.client.models.paper`),
       and a live account needs ``allow_live=True`` as well as ``dry_run=False``.
    5. Placement runs one order at a time per login (so per account too), with a cOID derived
       from dag id, task id, run id and map index: a retried task adopts the order it placed
       before. A retry (``try_number`` > 1) looks for that order first and, when IBKR has it,
       adopts it without the checks above and below: they held when it was sent, and a price
       that moved since (or a what-if after its fill) must not leave it unfollowed.
    6. Confirmation prompts are confirmed only for ids in ``allowed_message_ids``; any other
       prompt is declined and the task fails with IBKR's text.

    ``dry_run`` and ``allow_live`` are templated (as ``whatif_only`` and ``allow_live``), so
    ``"{{ params.dry_run }}"`` works even where templates render as text. ``symbol`` only names
    the contract in logs and in :attr:`label` (``BUY 25 AAPL``), e.g. for a mapped task's
    ``map_index_template="{{ task.label }}"``; the order goes by ``conid``.

    Example::

        IbkrPlaceOrderOperator(
            task_id="buy_vti",
            account_id="DU1234567",
            conid=12340038,                 # VTI
            side="BUY",
            quantity=10,
            order_type="LMT",
            limit_price=290.0,
            dry_run=False,                  # paper account: places for real in paper
            allowed_message_ids=["o163"],   # price-constraint warning is expected here
            max_notional=5_000,
        )

    :param plan_hash: the hash of the plan this order belongs to; with ``approved_plan_hash``
        (templated, from :class:`~ibkr_provider.operators.approval.IbkrPlanApprovalOperator`) a
        real order goes only when both match.
    :param reference_price: the price the approver saw; a real order goes only when IBKR's last
        price is within ``max_price_drift`` (a fraction, default 0.01) of it.
    :param journal_conn_id: a connection naming the trade journal's database
        (:class:`~ibkr_provider.hooks.journal.IbkrJournalHook`): each placed order is appended once.
    :param notifiers: Airflow notifiers told of each placed order (``ibkr_event``, see
        :mod:`ibkr_provider.notifications`); one that fails is a warning, the order stands.
    :return: ``{"dry_run", "account_id", "live_account", "order", "whatif"}`` plus, when placed,
        ``{"order_id", "status", "coid", "adopted"}``.
    """

    template_fields: Sequence[str] = (
        "ibkr_conn_id",
        "account_id",
        "conid",
        "side",
        "quantity",
        "cash_quantity",
        "limit_price",
        "whatif_only",
        "allow_live",
        "symbol",
        "journal_conn_id",
        "plan_hash",
        "approved_plan_hash",
        "reference_price",
        "max_price_drift",
    )
    ui_color = "#f7d9c4"

    def __init__(
        self,
        *,
        account_id: str,
        conid: int | str,
        side: str,
        quantity: float | str | None = None,
        cash_quantity: float | str | None = None,
        order_type: str = "MKT",
        limit_price: float | str | None = None,
        tif: str = "DAY",
        dry_run: bool | str = True,
        allow_live: bool | str = False,
        allowed_message_ids: Sequence[str] = (),
        max_quantity: float | str | None = None,
        max_notional: float | str | None = None,
        symbol: str | None = None,
        journal_conn_id: str | None = None,
        plan_hash: str | None = None,
        approved_plan_hash: str | None = None,
        reference_price: float | str | None = None,
        max_price_drift: float | str = "0.01",
        notifiers: BaseNotifier | Sequence[BaseNotifier] | None = None,
        ibkr_conn_id: str = IbkrHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.account_id = account_id
        self.conid = conid
        self.symbol = symbol
        self.side = side
        self.quantity = quantity
        self.cash_quantity = cash_quantity
        self.order_type = order_type
        self.limit_price = limit_price
        self.tif = tif
        # Not "self.dry_run": BaseOperator.dry_run() is a method of its own.
        self.whatif_only = dry_run
        self.allow_live = allow_live
        self.allowed_message_ids = tuple(allowed_message_ids)
        self.max_quantity = max_quantity
        self.max_notional = max_notional
        self.ibkr_conn_id = ibkr_conn_id
        self.journal_conn_id = journal_conn_id
        self.plan_hash = plan_hash
        self.approved_plan_hash = approved_plan_hash
        self.reference_price = reference_price
        self.max_price_drift = max_price_drift
        self.notifiers = notifier_list(notifiers)

    @property
    def label(self) -> str:
        """What the order does, as a person says it: ``BUY 25 AAPL``, ``BUY 500 cash of VTI``."""
        what = self.symbol or f"conid {self.conid}"
        if self.quantity not in (None, ""):
            return f"{str(self.side).upper()} {self.quantity} {what}"
        return f"{str(self.side).upper()} {self.cash_quantity} cash of {what}"

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_fast(f"IBKR order ({self.task_id})"), IbkrHook(ibkr_conn_id=self.ibkr_conn_id) as hook:
            return self._place(context, hook)

    def _place(self, context: Context, hook: IbkrHook) -> dict[str, Any]:
        # Everything the person typed is checked before the first request.
        whatif_only = flag("dry_run", self.whatif_only)
        allow_live = flag("allow_live", self.allow_live)
        max_quantity = amount("max_quantity", self.max_quantity)
        max_notional = amount("max_notional", self.max_notional)
        account_id = fields.account_id(self.account_id)
        ti = context["ti"]
        map_index = ti.map_index if ti.map_index is not None else -1
        ticket = ticket_of(
            conid=self.conid,
            side=self.side,
            quantity=self.quantity,
            cash_quantity=self.cash_quantity,
            order_type=self.order_type,
            limit_price=self.limit_price,
            tif=self.tif,
            coid=order_coid(ti.dag_id, ti.task_id, ti.run_id, map_index),
        )
        client = hook.get_conn()
        live = not client.portfolio.is_paper(account_id)
        refuse_unless_allowed(account_id, live=live, dry_run=whatif_only, allow_live=allow_live)
        result: dict[str, Any] = {
            "dry_run": whatif_only,
            "account_id": account_id,
            "symbol": self.symbol,
            "label": self.label,
            "live_account": live,
            "order": ticket.to_json(account_id),
            "whatif": {},  # none of this try's own when it adopts an earlier try's order
        }
        # A retry adopts the order an earlier try placed before checking anything (safety 5).
        placed = None
        if not whatif_only and ti.try_number > 1 and ticket.coid:
            placed = client.orders.placed_earlier(account_id, ticket.coid)
        if placed is None:
            if not whatif_only:
                self._check_approval(client, ticket)
            check_quantity(client, ticket, max_quantity)
            whatif = preview(client, account_id, ticket, "the order")
            check_notional(ticket, whatif, max_notional)
            result["whatif"] = whatif.summary()
            if whatif_only:
                what = f"{self.label} (conid {ticket.conid}) on {account_id}"
                self.log.info("DRY RUN (nothing placed): %s -> what-if %s", what, result["whatif"])
                return result
            placed = client.orders.place(account_id, ticket, allowed_message_ids=self.allowed_message_ids)
        adopted = " adopted from an earlier attempt" if placed.adopted else ""
        what = f"{self.label} (conid {ticket.conid}) on {account_id} {placed.status.value}"
        self.log.info("Order %s: %s (cOID %s)%s", placed.order_id, what, placed.coid, adopted)
        if self.journal_conn_id:
            self._journal(context, account_id, ticket, placed, result["whatif"])
        text = describe(
            order=f"{self.label} on {account_id}",
            ibkr_order_id=placed.order_id,
            status=placed.status.value,
            coid=placed.coid,
            what_if=result["whatif"],
        )
        notify(self.notifiers, context, IbkrEvent("order_placed", f"Placed: {what}", text), self.log)
        result.update(
            {
                "order_id": placed.order_id,
                "status": placed.status.value,
                "coid": placed.coid,
                "adopted": placed.adopted,
                "confirmed_message_ids": list(placed.confirmed_message_ids),
                "lock_wait_seconds": placed.lock_wait_seconds,
            }
        )
        return result

    def _check_approval(self, client: IbkrClient, ticket: OrderTicket) -> None:
        """An order of an approved plan goes only if it is of that plan and the price has not
        moved beyond ``max_price_drift`` from what the approver saw."""
        from ibkr_provider.workflows.approval import check_approved, check_price_drift

        if self.plan_hash is not None or self.approved_plan_hash is not None:
            check_approved(self.plan_hash, self.approved_plan_hash)
        seen = amount("reference_price", self.reference_price)
        if seen is not None:
            drift = amount("max_price_drift", self.max_price_drift) or Decimal(0)
            quote = client.market_data.snapshot([ticket.conid]).get(ticket.conid)
            check_price_drift(self.label, seen, quote.last if quote is not None else None, drift)

    def _journal(
        self, context: Context, account_id: str, ticket: OrderTicket, placed: PlacedOrder, whatif: Any
    ) -> None:
        """Append the order to the trade journal (a retried task adopts the order and writes no
        second row: the entry is keyed by the cOID)."""
        from ibkr_provider.hooks.journal import IbkrJournalHook
        from ibkr_provider.journal.entries import RunRef
        from ibkr_provider.journal.events import order_entry

        ti = context["ti"]
        run = RunRef(ti.dag_id, ti.run_id, ti.task_id, ti.map_index if ti.map_index is not None else -1)
        entry = order_entry(run, account_id, ticket, placed, symbol=self.symbol, whatif=whatif)
        with IbkrJournalHook(str(self.journal_conn_id)) as journal:
            written = journal.append([entry])
        self.log.info(
            "Trade journal %s: order %s %s",
            self.journal_conn_id,
            placed.order_id,
            "written" if written else "already there",
        )
