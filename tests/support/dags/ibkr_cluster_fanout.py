"""Test-only DAG for the Celery cluster: sixteen mapped tasks, spread over the workers, each
reading the accounts through ``ibkr_default`` and reporting which host (worker) ran it."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="ibkr_cluster_fanout",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
)
def ibkr_cluster_fanout() -> None:
    @task
    def read_accounts(index: int) -> dict[str, object]:
        from ibkr_provider.hooks.ibkr import IbkrHook

        with IbkrHook().get_conn() as client:
            accounts = [a.account_id for a in client.list_accounts()]
        return {
            "index": index,
            "host": os.environ.get("IBKR_CLUSTER_HOST"),
            "airflow_home": os.environ.get("AIRFLOW_HOME"),
            "pid": os.getpid(),
            "accounts": accounts,
        }

    read_accounts.expand(index=list(range(16)))


ibkr_cluster_fanout()
