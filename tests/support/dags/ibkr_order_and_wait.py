"""Test-only DAG: place a resting paper limit order, move the sandbox price through it, and wait
for the fill with the deferrable sensor (its trigger runs inline under `airflow dags test`, in
the triggerer on a cluster). The price reaches the limit ``fill_after`` seconds after the move is
scheduled: long enough that the sensor's first check finds the order resting and defers."""

from __future__ import annotations

import os

import pendulum
import requests
from airflow.sdk import Param, dag, task

from ibkr_provider.operators.orders import IbkrPlaceOrderOperator
from ibkr_provider.sensors.order_status import IbkrOrderStatusSensor

VTI = 12340038


@dag(
    dag_id="ibkr_order_and_wait",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"fill_after": Param(6, type="number", minimum=1)},
)
def ibkr_order_and_wait() -> None:
    place = IbkrPlaceOrderOperator(
        task_id="place_order",
        account_id="DU2345678",
        conid=VTI,
        side="BUY",
        quantity=2,
        order_type="LMT",
        limit_price=280.0,
        dry_run=False,
    )

    @task
    def market_moves(params: dict[str, float] | None = None) -> None:
        after = float((params or {})["fill_after"])
        requests.post(
            f"{os.environ['IBKR_SANDBOX_URL']}/__sandbox__/prices",
            json={"conid": VTI, "price": 279.5, "after": after},
            timeout=10,
        ).raise_for_status()

    wait = IbkrOrderStatusSensor(
        task_id="wait_for_fill",
        order_id="{{ ti.xcom_pull(task_ids='place_order')['order_id'] }}",
        deferrable=True,
        poke_interval=1,
        timeout=120,
    )
    place >> market_moves() >> wait


ibkr_order_and_wait()
