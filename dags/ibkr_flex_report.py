"""
### IBKR Flex report export

Every weekday at 06:00 New York time, runs a Flex query for the run's data interval and saves
the raw report plus CSVs of its Trades, OpenPositions and CashReport sections. Emits an event on
the `ibkr_flex_report` Asset with the file paths.

*Times in the UI*: Airflow shows them in the time zone picked at the bottom left of the UI
(UTC unless you change it), not in New York's: 06:00 New York is 11:00 UTC in winter and 10:00 UTC in summer.

- Connection: `ibkr_flex_default` (type *Interactive Brokers Flex*; the Flex token is the password).
- Params: `query_id` (your Activity Flex query id) and `output_dir` (local directory or
  object-storage URL; empty means `$AIRFLOW_HOME/ibkr/flex`).
- IBKR generates statements slowly: "generation in progress" (1019) is polled, "too many
  requests" (1018) backs off, an expired or invalid token (1012/1015) fails with a clear message.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, Param

from ibkr_provider.operators.flex import IbkrFlexReportOperator

DEFAULT_OUTPUT = os.path.join(os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "ibkr", "flex")

with DAG(
    dag_id="ibkr_flex_report",
    schedule="0 6 * * 1-5",
    start_date=pendulum.datetime(2026, 1, 1, tz="America/New_York"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    params={
        "query_id": Param("100001", type="string", description="Your Activity Flex query id (digits)."),
        "output_dir": Param(
            None,
            type=["string", "null"],
            description=f"Directory or object-storage URL; empty: {DEFAULT_OUTPUT}",
        ),
    },
    tags=["ibkr", "flex"],
    doc_md=__doc__,
):
    IbkrFlexReportOperator(
        task_id="export_flex_report",
        query_id="{{ params.query_id }}",
        output_path="{{ params.output_dir or '" + DEFAULT_OUTPUT + "' }}",
        use_data_interval=True,
        outlets=[Asset(name="ibkr_flex_report", uri="ibkr://flex/report")],
    )
