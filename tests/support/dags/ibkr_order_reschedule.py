"""Test-only DAG: place a resting paper limit order and wait for its fill with the sensor in
``reschedule`` mode. Nothing in the DAG moves the price: the test steps the sandbox's price
model until the path crosses the limit."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from ibkr_provider.operators.orders import IbkrPlaceOrderOperator
from ibkr_provider.sensors.order_status import IbkrOrderStatusSensor

VTI = 12340038


@dag(
    dag_id="ibkr_order_reschedule",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"limit_price": Param(280.0, type="number")},
)
def ibkr_order_reschedule() -> None:
    place = IbkrPlaceOrderOperator(
        task_id="place_order",
        account_id="DU2345678",
        conid=VTI,
        side="BUY",
        quantity=2,
        order_type="LMT",
        limit_price="{{ params.limit_price }}",
        dry_run=False,
    )
    wait = IbkrOrderStatusSensor(
        task_id="wait_for_fill",
        order_id="{{ ti.xcom_pull(task_ids='place_order')['order_id'] }}",
        mode="reschedule",
        poke_interval=1,
        timeout=180,
    )
    place >> wait


ibkr_order_reschedule()
