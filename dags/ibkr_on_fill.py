"""
### IBKR: on every fill

Runs **once per new fill** of the `ibkr_default` connection's accounts, as IBKR reports it on its
websocket: the Asset `ibkr_fills` has an `AssetWatcher` with `IbkrFillEventTrigger`, which runs
in Airflow's triggerer and adds an Asset event per new execution (its extra's `payload`: the
execution id, cOID, account, symbol, side, size, price, commission, time).

- The fill goes to the trade journal (param `journal_conn_id`, default `ibkr_journal`; empty:
  none) and to the notifiers (mail when `IBKR_NOTIFY_EMAIL` is set), once per execution id.
- Several fills close together may arrive as one run with several events, and Airflow 3.3 can
  leave events of a burst out of every run (seen in the cluster test: six events from one
  triggerer moment, one run with one of them). So each run also reads IBKR's fills of the last
  day (`/iserver/account/trades`) and records those not journaled yet: no fill is left out.
- **Triggerer restarts**: the watcher keeps the execution ids it has fired in Airflow's asset
  state store, so IBKR's replay of the last 7 days on the new socket fires nothing again; a
  triggerer killed in the instant between handing an event to Airflow and storing its id can
  fire that one fill twice (the journal then shows it twice under two runs).
- While the DAG is paused the watcher does not run; fills of that time come as IBKR's replay
  (7 days) when it is unpaused.
"""

from __future__ import annotations

import logging
from typing import Any

import pendulum
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
    def record_fills() -> list[dict[str, Any]]:
        from ibkr_provider.hooks.ibkr import IbkrHook
        from ibkr_provider.hooks.journal import IbkrJournalHook
        from ibkr_provider.journal.entries import RunRef
        from ibkr_provider.journal.events import execution_entry
        from ibkr_provider.notifications import IbkrEvent, describe, notify

        context = get_current_context()
        fills = {
            str(payload["execution_id"]): payload
            for event in context["triggering_asset_events"][FILLS]
            if (payload := dict(event.extra.get("payload") or {})).get("execution_id")
        }
        with IbkrHook() as hook:  # and IBKR's own list: events Airflow left out of every run
            for execution in hook.get_conn().iserver.executions(days=1):
                fills.setdefault(execution.execution_id, execution.summary())
        ti = context["ti"]
        entries = [execution_entry(RunRef(ti.dag_id, ti.run_id, ti.task_id), fill) for fill in fills.values()]
        new = entries
        if journal_conn_id := context["params"]["journal_conn_id"]:
            with IbkrJournalHook(journal_conn_id) as journal:
                known = journal.known(entry.event_key for entry in entries)
                new = [entry for entry in entries if entry.event_key not in known]
                journal.append(new)
            log.info("Trade journal %s: %d fill(s) seen, %d new", journal_conn_id, len(entries), len(new))
        for entry in new:
            fill = dict(entry.payload)
            subject = f"Fill: {fill['side']} {fill['size']} {fill['symbol']} at {fill['price']}"
            notify(NOTIFY, context, IbkrEvent("fill", subject, describe(**fill)), log)
        return [dict(entry.payload) for entry in new]

    record_fills()
