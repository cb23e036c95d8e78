"""
### IBKR drawdown guard

Runs **when an account's loss for the day passes a threshold**, as IBKR reports it on its
websocket: the Asset `ibkr_drawdown` has an `AssetWatcher` with `IbkrAccountValueEventTrigger`
(IBKR's profit-and-loss topic `spl`, in Airflow's triggerer), which adds an Asset event when an
account's daily PnL goes to or below minus `IBKR_DRAWDOWN_DAILY_LOSS` (environment variable,
default 5000, in the account's base currency; read when the DAG file is parsed).

- The run writes a risk report for each account that crossed (daily PnL, net liquidation, margin
  cushion, excess liquidity, its `largest` positions by value) to its log and XCom, and notifies (mail when
  `IBKR_NOTIFY_EMAIL` is set).
- **Once per crossing**: while the loss stays beyond the threshold nothing more fires; once the
  day recovers above it the guard re-arms. The armed state is kept in Airflow's asset state store,
  so a triggerer restart does not fire the same loss again, and a loss that passed the threshold
  while the triggerer was down fires once it is back.
- While the DAG is paused the watcher does not run; a loss still beyond the threshold when it is
  unpaused is not a new crossing.
- When IBKR refuses the websocket the watcher polls IBKR's PnL every minute instead and says so
  once in the triggerer's log.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, Param, get_current_context, task

from ibkr_provider.notifications import email_notifiers_from_env
from ibkr_provider.triggers.account_values import IbkrAccountValueEventTrigger

DAILY_LOSS = os.environ.get("IBKR_DRAWDOWN_DAILY_LOSS", "5000")
DRAWDOWN = Asset(
    name="ibkr_drawdown",
    uri="ibkr://drawdown/ibkr_default",
    watchers=[
        AssetWatcher(
            name="ibkr_drawdown_watcher",
            trigger=IbkrAccountValueEventTrigger(
                ibkr_conn_id="ibkr_default", metric="daily_pnl", direction="below", level=f"-{DAILY_LOSS}"
            ),
        )
    ],
)
NOTIFY = email_notifiers_from_env()
log = logging.getLogger(__name__)

with DAG(
    dag_id="ibkr_drawdown_guard",
    schedule=[DRAWDOWN],
    start_date=pendulum.datetime(2026, 1, 1, tz="America/New_York"),
    catchup=False,
    default_args={"retries": 2},
    params={
        "largest": Param(
            5, type="integer", minimum=1, description="How many of the largest positions to list."
        ),
    },
    tags=["ibkr", "events", "risk"],
    doc_md=__doc__,
):

    @task
    def risk_report() -> list[dict[str, Any]]:
        from ibkr_provider.hooks.ibkr import IbkrHook
        from ibkr_provider.notifications import IbkrEvent, notify
        from ibkr_provider.workflows.risk import drawdown_report

        context = get_current_context()
        crossed = {
            str(payload["account_id"]): payload
            for event in context["triggering_asset_events"][DRAWDOWN]
            if (payload := dict(event.extra.get("payload") or {})).get("account_id")
        }
        reports = []
        with IbkrHook() as hook:
            for account_id, payload in crossed.items():
                report = drawdown_report(hook.get_conn(), account_id, top=context["params"]["largest"])
                text = f"Daily loss beyond {payload['level']} on {account_id}.\n{report.text()}"
                log.info("%s", text)
                subject = f"Drawdown: {account_id} daily PnL {payload['value']} (limit {payload['level']})"
                notify(NOTIFY, context, IbkrEvent("drawdown", subject, text), log)
                reports.append(report.as_json())
        return reports

    risk_report()
