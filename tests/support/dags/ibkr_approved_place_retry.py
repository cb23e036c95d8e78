"""Test-only DAG: a person approves one paper market order, then it is placed with retries and
journaled. The test makes the sandbox lose the answer to the first placement (and kills the
worker holding it), so Airflow retries the task and the retry must adopt the order by its cOID
instead of placing a second one, and journal it once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, get_current_context, task

from ibkr_provider.operators.approval import IbkrPlanApprovalOperator
from ibkr_provider.operators.orders import IbkrPlaceOrderOperator
from ibkr_provider.workflows.approval import plan_hash

VTI = 12340038
ORDER = {
    "symbol": "VTI",
    "conid": VTI,
    "side": "BUY",
    "quantity": "1",
    "order_type": "MKT",
    "limit_price": None,
}
PLAN: dict[str, Any] = {
    "account_id": "DU2345678",
    "paper": True,
    "orders": [{**ORDER, "price": None, "label": "BUY 1 VTI", "whatif": {}}],
}


@dag(
    dag_id="ibkr_approved_place_retry",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
)
def ibkr_approved_place_retry() -> None:
    @task
    def plan() -> None:
        get_current_context()["ti"].xcom_push(key="plan", value=PLAN)

    approve = IbkrPlanApprovalOperator(task_id="approve", plan_task_id="plan", journal_conn_id="ibkr_journal")
    place = IbkrPlaceOrderOperator(
        task_id="place_order",
        account_id="DU2345678",
        conid=VTI,
        symbol="VTI",
        side="BUY",
        quantity=1,
        dry_run=False,
        plan_hash=plan_hash(PLAN),
        approved_plan_hash="{{ ti.xcom_pull(task_ids='approve')['plan_hash'] }}",
        journal_conn_id="ibkr_journal",
        retries=2,
        retry_delay=timedelta(seconds=1),
    )
    plan() >> approve >> place


ibkr_approved_place_retry()
