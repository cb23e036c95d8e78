"""
### IBKR: on every fill (`ibkr_on_fill` and `ibkr_fill`)

**One `ibkr_fill` run per fill** of the `ibkr_default` connection's accounts, as IBKR reports it
on its websocket. Two DAGs in this file (unpause both):

- `ibkr_on_fill` runs on the Asset `ibkr_fills`, whose `AssetWatcher` holds
  `IbkrFillEventTrigger` (in Airflow's triggerer; an Asset event per new execution, its extra's
  `payload` the execution id, cOID, account, symbol, side, size, price, commission, time). It
  starts one `ibkr_fill` run per fill, with the run id `fill__<execution id>`: Airflow refuses a
  second run with that id, so a fill reaches `ibkr_fill` once however often its event comes
  (a triggerer restart, a retry), and the grid shows one run per fill.
- `ibkr_fill` writes the fill (its `fill` param) to the trade journal (param `journal_conn_id`,
  default `ibkr_journal`; empty: none) and tells the notifiers (mail when `IBKR_NOTIFY_EMAIL`
  is set).

Why the relay: Airflow 3.3 folds the events that arrive between two scheduler loops into one run
of an asset-scheduled DAG, and trigger events carry no partition key that would split them; and
Airflow can leave events of a burst out of every run (seen in the cluster test: six events of
one instant, one run with one of them). So `ibkr_on_fill` also reads IBKR's fills of the last day
(`/iserver/account/trades`) and starts a run for each one it has not started yet.

- **Triggerer restarts**: the watcher keeps the execution ids it has fired in Airflow's asset
  state store, so IBKR's replay of the last 7 days on the new socket fires nothing again; an id
  fired just before a kill fires again after it, and its run id is already taken.
- While `ibkr_on_fill` is paused its watcher does not run; fills of that time come as IBKR's
  replay (7 days) when it is unpaused.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Asset, AssetWatcher, Param, get_current_context, task

from ibkr_provider.notifications import email_notifiers_from_env
from ibkr_provider.triggers.fills import IbkrFillEventTrigger

FILLS = Asset(
    name="ibkr_fills",
    uri="ibkr://fills/ibkr_default",
    watchers=[
        AssetWatcher(name="ibkr_fill_watcher", trigger=IbkrFillEventTrigger(ibkr_conn_id="ibkr_default"))
    ],
)
NOTIFY = email_notifiers_from_env()
log = logging.getLogger(__name__)

with DAG(
    dag_id="ibkr_on_fill",
    schedule=[FILLS],
    start_date=pendulum.datetime(2026, 1, 1, tz="America/New_York"),
    catchup=False,
    default_args={"retries": 2},
    params={
        "journal_conn_id": Param(
            "ibkr_journal", type="string", description="Connection of the trade journal; empty: none."
        ),
    },
    tags=["ibkr", "events"],
    doc_md=__doc__,
):

    @task
    def fills_to_record() -> list[dict[str, Any]]:
        from ibkr_provider.hooks.ibkr import IbkrHook

        context = get_current_context()
        fills = {
            str(payload["execution_id"]): payload
            for event in context["triggering_asset_events"][FILLS]
            if (payload := dict(event.extra.get("payload") or {})).get("execution_id")
        }
        with IbkrHook() as hook:  # and IBKR's own list: events Airflow left out of every run
            for execution in hook.get_conn().iserver.executions(days=1):
                fills.setdefault(execution.execution_id, execution.summary())
        journal = context["params"]["journal_conn_id"]
        return [
            {
                "trigger_run_id": "fill__" + re.sub(r"[^A-Za-z0-9_.~:+-]", "_", execution_id),
                "conf": {"fill": fill, "journal_conn_id": journal},
            }
            for execution_id, fill in fills.items()
        ]

    TriggerDagRunOperator.partial(
        task_id="run_per_fill", trigger_dag_id="ibkr_fill", skip_when_already_exists=True
    ).expand_kwargs(fills_to_record())

with DAG(
    dag_id="ibkr_fill",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="America/New_York"),
    catchup=False,
    max_active_runs=4,
    default_args={"retries": 2},
    params={
        "fill": Param({}, type="object", description="The execution (ibkr_on_fill sets it)."),
        "journal_conn_id": Param(
            "ibkr_journal", type="string", description="Connection of the trade journal; empty: none."
        ),
    },
    tags=["ibkr", "events"],
    doc_md=__doc__,
):

    @task
    def record_fill() -> dict[str, Any]:
        from ibkr_provider.hooks.journal import IbkrJournalHook
        from ibkr_provider.journal.entries import RunRef
        from ibkr_provider.journal.events import execution_entry
        from ibkr_provider.notifications import IbkrEvent, describe, notify

        context = get_current_context()
        fill = dict(context["params"]["fill"])
        ti = context["ti"]
        entry = execution_entry(RunRef(ti.dag_id, ti.run_id, ti.task_id), fill)
        if journal_conn_id := context["params"]["journal_conn_id"]:
            with IbkrJournalHook(journal_conn_id) as journal:
                if journal.known([entry.event_key]):  # a retry after the row was written
                    log.info("Trade journal %s holds fill %s already", journal_conn_id, fill["execution_id"])
                    return fill
                journal.append([entry])
        subject = f"Fill: {fill['side']} {fill['size']} {fill['symbol']} at {fill['price']}"
        notify(NOTIFY, context, IbkrEvent("fill", subject, describe(**fill)), log)
        return fill

    record_fill()
