"""Test-only DAG: a portfolio snapshot with quick retries, for the test that a transient fault
outlasting the client's own retries is retried by Airflow."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag

from ibkr_provider.operators.portfolio import IbkrPortfolioSnapshotOperator


@dag(
    dag_id="ibkr_snapshot_retry",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
)
def ibkr_snapshot_retry() -> None:
    IbkrPortfolioSnapshotOperator(
        task_id="snapshot_portfolio",
        account_ids=["DU2345678"],
        retries=2,
        retry_delay=timedelta(seconds=1),
    )


ibkr_snapshot_retry()
