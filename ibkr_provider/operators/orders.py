"""``IbkrPlaceOrderOperator``: place one order safely; a dry run unless told otherwise."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Context

from ibkr_provider.client.errors import (
    IbkrErrorCode,
    IbkrOrderError,
    IbkrOrderRefusedError,
    IbkrValidationError,
)
from ibkr_provider.client.paper import is_paper_account
from ibkr_provider.failures import fail_fast
from ibkr_provider.hooks.ibkr import IbkrHook

if TYPE_CHECKING:
    from ibkr_provider.client.order_models import OrderTicket, WhatIf


def order_coid(dag_id: str, task_id: str, run_id: str, map_index: int) -> str:
    """A cOID unique to one task instance and stable across its retries (IBKR keeps cOIDs
    unique for a day), so a retry finds and adopts the order instead of placing it again."""
    digest = hashlib.sha256(f"{dag_id}\x1f{task_id}\x1f{run_id}\x1f{map_index}".encode()).hexdigest()
    return f"af-{digest[:28]}"


class IbkrPlaceOrderOperator(BaseOperator):
    """Place an IBKR order, a what-if preview by default.

    Safety, in order, all before any order is sent:

    1. The ticket is validated; bad input raises an error naming the field.
    2. ``max_quantity`` / ``max_notional`` caps. The notional comes from IBKR's what-if; when
       the what-if carries no amount the cap cannot be checked, and the order is refused.
    3. ``dry_run=True`` (the default) stops after the what-if, logs and returns it.
    4. A live (non-paper) account needs ``allow_live=True`` as well as ``dry_run=False``.
    5. Placement runs one order at a time per login (so per account too), with a cOID derived
       from dag id, task id, run id and map index: a retried task adopts the order it placed
       before.
    6. Confirmation prompts are confirmed only for ids in ``allowed_message_ids``; any other
       prompt is declined and the task fails with IBKR's text.

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

    :return: ``{"dry_run", "account_id", "order", "whatif"}`` plus, when placed,
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
        dry_run: bool = True,
        allow_live: bool = False,
        allowed_message_ids: Sequence[str] = (),
        max_quantity: float | None = None,
        max_notional: float | None = None,
        ibkr_conn_id: str = IbkrHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.account_id = account_id
        self.conid = conid
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

    @staticmethod
    def _number(name: str, value: Any) -> float | None:
        if value is None or value == "":
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise IbkrValidationError(name, f"{value!r} is not a number") from None

    def _ticket(self, coid: str | None) -> OrderTicket:
        from ibkr_provider.client.order_models import OrderTicket

        try:
            conid = int(self.conid)
        except (TypeError, ValueError):
            raise IbkrValidationError("conid", f"{self.conid!r} is not an IBKR contract id") from None
        ticket = OrderTicket(
            conid=conid,
            side=str(self.side).upper(),
            quantity=self._number("quantity", self.quantity),
            cash_quantity=self._number("cash_quantity", self.cash_quantity),
            order_type=str(self.order_type).upper(),
            limit_price=self._number("limit_price", self.limit_price),
            tif=str(self.tif).upper(),
            coid=coid,
        )
        ticket.validate()
        if (
            self.max_quantity is not None
            and ticket.quantity is not None
            and ticket.quantity > self.max_quantity
        ):
            raise IbkrOrderRefusedError(
                f"quantity {ticket.quantity:g} exceeds max_quantity {self.max_quantity:g}. Nothing was sent.",
                code=IbkrErrorCode.CAP_EXCEEDED,
            )
        if (
            self.max_notional is not None
            and ticket.cash_quantity is not None
            and (ticket.cash_quantity > self.max_notional)
        ):
            raise IbkrOrderRefusedError(
                f"cash_quantity {ticket.cash_quantity:g} exceeds max_notional {self.max_notional:g}. "
                "Nothing was sent.",
                code=IbkrErrorCode.CAP_EXCEEDED,
            )
        return ticket

    def _check_notional(self, whatif: WhatIf) -> None:
        """Refuse an order over ``max_notional``, or whose notional IBKR's what-if did not state
        (a cap that cannot be checked must not wave the order through)."""
        if self.max_notional is None:
            return
        if whatif.amount is None:
            shown = str(whatif.raw.get("amount"))[:200]
            raise IbkrOrderRefusedError(
                f"max_notional {self.max_notional:,.2f} cannot be checked: IBKR's what-if gave no order "
                f"amount (its 'amount' section: {shown}). Refusing the order; nothing was placed.",
                code=IbkrErrorCode.CAP_UNCHECKABLE,
            )
        if whatif.amount > self.max_notional:
            raise IbkrOrderRefusedError(
                f"the order is worth {whatif.amount:,.2f} (IBKR what-if), over max_notional "
                f"{self.max_notional:,.2f}. Nothing was placed.",
                code=IbkrErrorCode.CAP_EXCEEDED,
            )

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_fast(f"IBKR order ({self.task_id})"), IbkrHook(ibkr_conn_id=self.ibkr_conn_id) as hook:
            return self._place(context, hook)

    def _place(self, context: Context, hook: IbkrHook) -> dict[str, Any]:
        ti = context["ti"]
        coid = order_coid(ti.dag_id, ti.task_id, ti.run_id, ti.map_index if ti.map_index is not None else -1)
        ticket = self._ticket(coid)
        account_id = str(self.account_id)
        live = not is_paper_account(account_id)
        if live and not self.whatif_only and not self.allow_live:
            raise IbkrOrderRefusedError(
                f"{account_id} is a live (non-paper) account: refusing to place a real order without "
                "allow_live=True (and dry_run=False). Nothing was sent.",
                code=IbkrErrorCode.LIVE_NOT_ALLOWED,
            )
        client = hook.get_conn()
        whatif = client.orders.whatif(account_id, ticket)
        if whatif.error:
            raise IbkrOrderError(
                f"IBKR's what-if rejected the order: {whatif.error}",
                ibkr_error=whatif.error,
                code=IbkrErrorCode.REJECTED,
            )
        self._check_notional(whatif)
        result: dict[str, Any] = {
            "dry_run": self.whatif_only,
            "account_id": account_id,
            "live_account": live,
            "order": ticket.to_json(account_id),
            "whatif": whatif.summary(),
        }
        if self.whatif_only:
            self.log.info("DRY RUN (nothing placed): %s -> what-if %s", ticket, whatif.summary())
            return result
        placed = client.orders.place(account_id, ticket, allowed_message_ids=self.allowed_message_ids)
        self.log.info(
            "Order %s %s (cOID %s)%s",
            placed.order_id,
            placed.status.value,
            placed.coid,
            " adopted from an earlier attempt" if placed.adopted else "",
        )
        result.update(
            {
                "order_id": placed.order_id,
                "status": placed.status.value,
                "coid": placed.coid,
                "adopted": placed.adopted,
                "confirmed_message_ids": list(placed.confirmed_message_ids),
            }
        )
        return result


class IbkrCancelOrderOperator(BaseOperator):
    """Cancel an IBKR order. IBKR acknowledges the request; pair it with
    :class:`~ibkr_provider.sensors.order_status.IbkrOrderStatusSensor` with
    ``expected_statuses=("Cancelled", "Filled")`` to wait for the outcome.

    Example::

        IbkrCancelOrderOperator(
            task_id="cancel_stale_order",
            account_id="DU1234567",
            order_id="{{ ti.xcom_pull(task_ids='place_order')['order_id'] }}",
        )

    :return: IBKR's acknowledgement (``msg``, ``order_id``, ``conid``, ``account``).
    """

    template_fields: Sequence[str] = ("ibkr_conn_id", "account_id", "order_id")
    ui_color = "#f2c4c4"

    def __init__(
        self, *, account_id: str, order_id: str, ibkr_conn_id: str = IbkrHook.default_conn_name, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.account_id = account_id
        self.order_id = order_id
        self.ibkr_conn_id = ibkr_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_fast(f"IBKR cancel ({self.task_id})"):
            order_id = str(self.order_id).strip()
            if not order_id.isdigit():
                raise IbkrValidationError("order_id", f"{self.order_id!r} is not an IBKR order id (digits)")
            with IbkrHook(ibkr_conn_id=self.ibkr_conn_id) as hook:
                answer = dict(hook.get_conn().orders.cancel(str(self.account_id), order_id))
        self.log.info("Cancel of order %s requested: %s", order_id, answer.get("msg"))
        return answer
