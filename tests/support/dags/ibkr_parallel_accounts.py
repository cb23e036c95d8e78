"""Test-only DAG: eight mapped tasks, each in its own process, read accounts through IbkrHook."""

from __future__ import annotations

import json
import os

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="ibkr_parallel_accounts",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
)
def ibkr_parallel_accounts() -> None:
    @task
    def read_accounts(index: int) -> None:
        from ibkr_provider.hooks.ibkr import IbkrHook

        accounts = [a.account_id for a in IbkrHook().get_conn().list_accounts()]
        report = {"index": index, "pid": os.getpid(), "accounts": accounts}
        with open(os.path.join(os.environ["IBKR_PARALLEL_OUT"], f"{index}.json"), "w") as handle:
            json.dump(report, handle)

    read_accounts.expand(index=list(range(8)))


ibkr_parallel_accounts()
