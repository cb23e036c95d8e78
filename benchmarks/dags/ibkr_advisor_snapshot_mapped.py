"""The benchmark's DAG (not an example to copy): an advisor's sub-accounts snapshotted by mapped
tasks, ``chunk`` accounts each, spread over the cluster's workers; each task writes its own
files. The connection is ``ibkr_advisor`` (``make cluster`` with
``IBKR_CLUSTER_ADVISOR_SUBACCOUNTS``)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task

from ibkr_provider.operators.portfolio import IbkrPortfolioSnapshotOperator

with DAG(
    dag_id="ibkr_advisor_snapshot_mapped",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"chunk": Param(100, type="integer"), "output_dir": Param("/tmp/advisor", type="string")},
    render_template_as_native_obj=True,
    tags=["benchmark"],
):

    @task
    def chunks(chunk: int) -> list[list[str]]:
        """Every sub-account, in groups of ``chunk``."""
        from ibkr_provider.hooks.ibkr import IbkrHook

        with IbkrHook(ibkr_conn_id="ibkr_advisor") as hook:
            ids = [a.account_id for a in hook.get_conn().portfolio.all_subaccounts()]
        return [ids[i : i + chunk] for i in range(0, len(ids), chunk)]

    IbkrPortfolioSnapshotOperator.partial(
        task_id="snapshot",
        ibkr_conn_id="ibkr_advisor",
        output_path="{{ params.output_dir }}/{{ ti.map_index }}",
        retries=0,
    ).expand(account_ids=chunks("{{ params.chunk }}"))
