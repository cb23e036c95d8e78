"""
### IBKR portfolio snapshot

Every weekday after the US close, reads every account the `ibkr` connection can see (or the
ones listed in the `accounts` param): the account summary, the ledger and **every** position
page, and writes them to one JSON file per run.

- Connection: `ibkr_default` (change with the `ibkr_conn_id` param).
- Output: `<output_dir>/portfolio_snapshot_<run>.json`; `output_dir` defaults to
  `$AIRFLOW_HOME/ibkr/snapshots`.
- A failed position page fails the task: a snapshot is never silently short.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

log = logging.getLogger(__name__)


@dag(
    dag_id="ibkr_portfolio_snapshot",
    schedule="30 17 * * 1-5",
    start_date=pendulum.datetime(2026, 1, 1, tz="America/New_York"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={
        "ibkr_conn_id": Param("ibkr_default", type="string", description="The ibkr connection to read."),
        "accounts": Param(
            [], type="array", description="Account ids to snapshot; empty means every account."
        ),
        "output_dir": Param(
            "", type="string", description="Directory for the JSON file; empty: $AIRFLOW_HOME/ibkr/snapshots"
        ),
    },
    tags=["ibkr", "portfolio"],
    doc_md=__doc__,
)
def ibkr_portfolio_snapshot() -> None:
    @task
    def snapshot_portfolio() -> dict[str, Any]:
        import json
        from pathlib import Path

        from ibkr_provider.hooks.ibkr import IbkrHook

        context = get_current_context()
        params = context["params"]
        client = IbkrHook(ibkr_conn_id=params["ibkr_conn_id"]).get_conn()
        accounts = client.list_accounts()
        wanted = set(params["accounts"]) or {a.account_id for a in accounts}
        unknown = wanted - {a.account_id for a in accounts}
        if unknown:
            raise ValueError(f"accounts param names accounts this login cannot see: {sorted(unknown)}")

        snapshot: dict[str, Any] = {"taken_at": pendulum.now("UTC").isoformat(), "accounts": []}
        totals: dict[str, Any] = {}
        for account in accounts:
            if account.account_id not in wanted:
                continue
            summary = client.account_summary(account.account_id)
            ledger = client.account_ledger(account.account_id)
            positions = client.all_positions(account.account_id)
            snapshot["accounts"].append(
                {
                    "account": dict(account.raw),
                    "summary": dict(summary.raw),
                    "ledger": dict(ledger.raw),
                    "positions": [dict(p.raw) for p in positions],
                }
            )
            totals[account.account_id] = {
                "net_liquidation": summary.net_liquidation,
                "positions": len(positions),
            }

        out_dir = Path(
            params["output_dir"] or Path(os.environ.get("AIRFLOW_HOME", "~/airflow")) / "ibkr" / "snapshots"
        )
        out_dir = out_dir.expanduser()
        out_dir.mkdir(parents=True, exist_ok=True)
        run_tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", context["run_id"])
        path = out_dir / f"portfolio_snapshot_{run_tag}.json"
        path.write_text(json.dumps(snapshot, indent=1))
        for account_id, figures in totals.items():
            log.info(
                "%s: net liquidation %.2f, %d positions",
                account_id,
                figures["net_liquidation"],
                figures["positions"],
            )
        log.info("Snapshot written to %s", path)
        return {"path": str(path), "accounts": totals}

    snapshot_portfolio()


ibkr_portfolio_snapshot()
