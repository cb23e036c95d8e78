"""``IbkrOrderStatusSensor``: wait until an order is filled, cancelled, rejected or inactive."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier, BaseSensorOperator, Context, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from ibkr_provider.failures import fail_fast
from ibkr_provider.hooks.names import DEFAULT_CONN_ID
from ibkr_provider.notifications import IbkrEvent, describe, notifier_list, notify

if TYPE_CHECKING:
    from ibkr_provider.client.models.orders import OrderStatus
    from ibkr_provider.hooks.ibkr import IbkrHook
    from ibkr_provider.journal.entries import JournalEntry


class IbkrOrderStatusSensor(BaseSensorOperator):
    """Wait for an IBKR order to reach a terminal state; succeed only on ``expected_statuses``.

    Works in ``poke`` and ``reschedule`` modes, and with ``deferrable=True`` hands the wait to
    :class:`IbkrOrderStatusTrigger` in the triggerer (no worker slot held). The deadline is the
    sensor's ``timeout``. Orders are never placed here.

    Example::

        IbkrOrderStatusSensor(
            task_id="wait_for_fill",
            order_id="{{ ti.xcom_pull('place_order')['order_id'] }}",
            deferrable=True,
            poke_interval=30,
            timeout=3600,
        )

    :param order_id: the IBKR order id (templated).
    :param expected_statuses: terminal states that count as success (default ``Filled``); any
        other terminal state fails the task with the order's status.
    :param use_stream: deferred waits follow the order on IBKR's websocket, falling back to
        polling every ``poke_interval`` when it is unavailable (``False``: always poll).
    :param notifiers: Airflow notifiers told how the order ended, with each fill (``ibkr_event``,
        see :mod:`ibkr_provider.notifications`); one that fails is a warning.
    :param journal_conn_id: the trade journal's connection
        (:class:`~ibkr_provider.hooks.journal.IbkrJournalHook`): the state the order ended in and
        each of its fills (price, quantity, commission, time, from IBKR's trades) are appended
        once, also when the order ended otherwise than expected.
    :return: ``{"order_id", "order_status", "filled"}``.
    """

    template_fields: Sequence[str] = ("order_id", "ibkr_conn_id", "journal_conn_id")
    ui_color = "#e6f0c7"

    def __init__(
        self,
        *,
        order_id: str,
        ibkr_conn_id: str = DEFAULT_CONN_ID,
        expected_statuses: Sequence[str] = ("Filled",),
        deferrable: bool = False,
        journal_conn_id: str | None = None,
        notifiers: BaseNotifier | Sequence[BaseNotifier] | None = None,
        use_stream: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from ibkr_provider.client.models.orders import TERMINAL_STATES

        terminal = sorted(state.value for state in TERMINAL_STATES)
        unknown = set(expected_statuses) - set(terminal)
        if unknown:
            raise ValueError(f"expected_statuses: {sorted(unknown)} are not terminal; use {terminal}")
        self.order_id = order_id
        self.ibkr_conn_id = ibkr_conn_id
        self.expected_statuses = tuple(expected_statuses)
        self.deferrable = deferrable
        self.journal_conn_id = journal_conn_id
        self.notifiers = notifier_list(notifiers)
        self.use_stream = use_stream

    @cached_property
    def hook(self) -> IbkrHook:
        """One hook (so one client) for every poke of this task; closed when the task ends."""
        from ibkr_provider.hooks.ibkr import IbkrHook

        return IbkrHook(ibkr_conn_id=self.ibkr_conn_id)

    def _outcome(
        self, context: Context, outcome: dict[str, Any], status: OrderStatus | None = None
    ) -> dict[str, Any]:
        """``status``: the final status when the caller just read it (a poke); a deferred wait's
        event carries only a summary, so the status is read again."""
        if self.journal_conn_id or self.notifiers:
            with fail_fast(f"IBKR order outcome ({self.task_id})"):
                self._record(context, status)
        if outcome["order_status"] not in self.expected_statuses:
            # Terminal: waiting again cannot change how the order ended.
            raise AirflowFailException(
                f"IBKR order {self.order_id} ended {outcome['order_status']!r}, not one of "
                f"{list(self.expected_statuses)}. Not retried: the order is final."
            )
        return outcome

    def _record(self, context: Context, status: OrderStatus | None) -> None:
        """Journal the order's final state and its fills (the executions IBKR lists for its cOID;
        a fill not listed yet is an error to retry, never a missing row), then tell the
        notifiers."""
        from ibkr_provider.journal.entries import RunRef
        from ibkr_provider.journal.events import fill_entries, status_entry

        client = self.hook.get_conn()
        status = status or client.orders.status(str(self.order_id))
        executions = client.iserver.executions(days=7, account_id=status.account_id) if status.filled else []
        ti = context["ti"]
        run = RunRef(ti.dag_id, ti.run_id, ti.task_id, ti.map_index if ti.map_index is not None else -1)
        fills = fill_entries(run, status, executions)
        if self.journal_conn_id:
            self._journal([status_entry(run, status), *fills])
        subject = f"Order {status.order_id} {status.status_text}: {status.filled:g} filled"
        text = "\n".join(
            [
                describe(
                    account=status.account_id,
                    ibkr_order_id=status.order_id,
                    status=status.status_text,
                    filled=f"{status.filled:g} of {status.size:g}" if status.size else status.filled,
                    average_price=status.average_price,
                    coid=status.coid,
                ),
                *(
                    f"fill {f.subject}: {f.side} {f.quantity} {f.symbol} at {f.price}, "
                    f"commission {f.commission}"
                    for f in fills
                ),
            ]
        )
        notify(self.notifiers, context, IbkrEvent("order_ended", subject, text), self.log)

    def _journal(self, entries: list[JournalEntry]) -> None:
        from ibkr_provider.hooks.journal import IbkrJournalHook

        with IbkrJournalHook(str(self.journal_conn_id)) as journal:
            written = journal.append(entries)
        self.log.info(
            "Trade journal %s: order %s %s, %d fill(s); %d new row(s)",
            self.journal_conn_id,
            entries[0].order_id,
            entries[0].payload.get("status"),
            len(entries) - 1,
            written,
        )

    def poke(self, context: Context) -> PokeReturnValue:
        with fail_fast(f"IBKR order status ({self.task_id})"):
            status: OrderStatus = self.hook.get_conn().orders.status(str(self.order_id))
        self.log.info("IBKR order %s is %s", self.order_id, status.status_text)
        if status.status.terminal:
            return PokeReturnValue(is_done=True, xcom_value=self._outcome(context, status.summary(), status))
        return PokeReturnValue(is_done=False)

    def execute(self, context: Context) -> Any:
        try:
            return self._wait(context)
        finally:
            self.hook.close()

    def _wait(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        # Imported here: the trigger module brings Airflow's trigger machinery, which a DAG file
        # importing this sensor should not pay for on every parse.
        from ibkr_provider.triggers.order_status import IbkrOrderStatusTrigger

        self.defer(
            trigger=IbkrOrderStatusTrigger(
                order_id=str(self.order_id),
                ibkr_conn_id=self.ibkr_conn_id,
                poll_interval=float(self.poke_interval),
                deadline=time.time() + float(self.timeout) if self.timeout else None,
                use_stream=self.use_stream,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)) if self.timeout else None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") == "success":
            return self._outcome(context, {k: event.get(k) for k in ("order_id", "order_status", "filled")})
        if event.get("status") == "timeout":
            raise AirflowSensorTimeout(
                f"IBKR order {self.order_id} was still {event.get('order_status')!r} at the sensor's deadline"
            )
        message = f"waiting for IBKR order {self.order_id} failed: {event.get('message')}"
        if event.get("permanent"):
            raise AirflowFailException(f"{message}. Not retried: retrying cannot fix this.")
        raise AirflowException(message)
