"""``IbkrCancelOrderOperator``: ask IBKR to cancel an order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from ibkr_provider.client import fields
from ibkr_provider.failures import fail_fast
from ibkr_provider.hooks.ibkr import IbkrHook


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
        from ibkr_provider.client.api.orders import order_id_of

        with fail_fast(f"IBKR cancel ({self.task_id})"):
            order_id = order_id_of(self.order_id)
            account_id = fields.account_id(self.account_id)
            with IbkrHook(ibkr_conn_id=self.ibkr_conn_id) as hook:
                answer = dict(hook.get_conn().orders.cancel(account_id, order_id))
        self.log.info("Cancel of order %s requested: %s", order_id, answer.get("msg"))
        return answer
