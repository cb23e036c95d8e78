"""
### IBKR portfolio snapshot

Every weekday at 16:30 New York time (after the US close), snapshots every account the `ibkr`
connection can see, or the ones in the `accounts` param: account summary, ledger and **every**
position page. Writes a JSON file (IBKR's payloads, unchanged) and a CSV of positions, and
emits an event on the `ibkr_portfolio_snapshot` Asset so downstream DAGs can run on fresh data.

*Times in the UI*: Airflow shows them in the time zone picked at the bottom left of the UI
(UTC unless you change it), not in New York's: 16:30 New York is 21:30 UTC in winter and 20:30 UTC in summer.

- Connection: `ibkr_default`.
- Output: `output_dir` param (a local directory or any object-storage URL such as
  `s3://bucket/prefix`); empty means `$AIRFLOW_HOME/ibkr/snapshots`.
- A failed position page fails the task (and it retries): a snapshot is never silently short.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, Param

from ibkr_provider.operators.portfolio import IbkrPortfolioSnapshotOperator

DEFAULT_OUTPUT = os.path.join(
    os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "ibkr", "snapshots"
)
SNAPSHOT_ASSET = Asset(name="ibkr_portfolio_snapshot", uri="ibkr://portfolio/snapshot")

with DAG(
    dag_id="ibkr_portfolio_snapshot",
    schedule="30 16 * * 1-5",
    start_date=pendulum.datetime(2026, 1, 1, tz="America/New_York"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={
        "accounts": Param(
            None, type=["array", "null"], description="Account ids to snapshot; empty means every account."
        ),
        "output_dir": Param(
            None,
            type=["string", "null"],
            description=f"Directory or object-storage URL; empty: {DEFAULT_OUTPUT}",
        ),
        "ibkr_conn_id": Param(
            "ibkr_default",
            type="string",
            description="The IBKR connection to snapshot, e.g. one Connect IBKR made for you.",
        ),
    },
    render_template_as_native_obj=True,
    tags=["ibkr", "portfolio"],
    doc_md=__doc__,
):
    IbkrPortfolioSnapshotOperator(
        task_id="snapshot_portfolio",
        ibkr_conn_id="{{ params.ibkr_conn_id }}",
        account_ids="{{ params.accounts }}",
        output_path="{{ params.output_dir or '" + DEFAULT_OUTPUT + "' }}",
        outlets=[SNAPSHOT_ASSET],
    )
