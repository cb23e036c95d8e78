"""Test-only DAG: place one paper market order with retries. The test makes the sandbox lose
the answer to the first placement, so Airflow retries the task and the retry must adopt the
order by its cOID instead of placing a second one."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag

from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

VTI = 12340038


@dag(
    dag_id="ibkr_place_retry",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
)
def ibkr_place_retry() -> None:
    IbkrPlaceOrderOperator(
        task_id="place_order",
        account_id="DU2345678",
        conid=VTI,
        side="BUY",
        quantity=1,
        dry_run=False,
        retries=2,
        retry_delay=timedelta(seconds=1),
    )


ibkr_place_retry()
