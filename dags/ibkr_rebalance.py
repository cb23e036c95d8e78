"""
### IBKR rebalance to target weights

On the first weekday of each month at 10:00 New York time, brings the symbols in `targets`
back to their target weights of the account's net liquidation.

1. **plan**: net liquidation, every position, prices from market-data snapshots; a symbol
   trades when its weight drifts more than `drift_band` from target and the trade is worth at
   least `min_trade`. Holdings not in `targets` are left alone (list them with weight 0 to sell).
2. **place_order** (one mapped task per order): **a dry run by default** (IBKR what-if only).
   Set `dry_run` to false to place; live accounts also need `allow_live`. Retries never place an
   order twice; unknown confirmation prompts fail the task. `order_type` MKT (default) or LMT:
   limit orders buy `limit_offset` below the snapshot price and sell that far above it.
3. **wait_for_fill**: deferrable sensors wait for each placed order to fill, checking every
   `IBKR_REBALANCE_FILL_POLL_SECONDS` (environment, default 30) seconds.
4. **summary**: the plan and what happened, also written as JSON to `output_dir`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task

from ibkr_provider.failures import fail_fast
from ibkr_provider.operators.orders import IbkrPlaceOrderOperator
from ibkr_provider.sensors.order_status import IbkrOrderStatusSensor

log = logging.getLogger(__name__)
FILL_POLL_SECONDS = float(os.environ.get("IBKR_REBALANCE_FILL_POLL_SECONDS", "30"))
DEFAULT_OUTPUT = os.path.join(
    os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "ibkr", "rebalance"
)

with DAG(
    dag_id="ibkr_rebalance",
    schedule="0 10 1-7 * 1-5",
    start_date=pendulum.datetime(2026, 1, 1, tz="America/New_York"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "account_id": Param(
            None, type=["string", "null"], description="Account to rebalance; empty: the connection's."
        ),
        "targets": Param({"VTI": 0.6, "BND": 0.3, "GLD": 0.1}, type="object", description="symbol -> weight"),
        "drift_band": Param(0.02, type="number", minimum=0, maximum=1, description="Trade past this drift."),
        "min_trade": Param(200, type="number", minimum=0, description="Smallest trade value worth placing."),
        "dry_run": Param(True, type="boolean", description="What-if only; set false to place orders."),
        "allow_live": Param(
            False, type="boolean", description="Needed (with dry_run false) for a live account."
        ),
        "allowed_message_ids": Param(
            None, type=["array", "null"], description="IBKR prompt ids to confirm, e.g. o163."
        ),
        "order_type": Param("MKT", type="string", enum=["MKT", "LMT"], description="Market or limit orders."),
        "limit_offset": Param(
            0.005,
            type="number",
            minimum=0,
            maximum=0.2,
            description="LMT only: buy this fraction below the snapshot price, sell this far above it.",
        ),
        "output_dir": Param(
            None, type=["string", "null"], description=f"Summary JSON directory; empty: {DEFAULT_OUTPUT}"
        ),
    },
    tags=["ibkr", "orders"],
    doc_md=__doc__,
):

    @task
    @fail_fast("IBKR rebalance plan")
    def plan() -> list[dict[str, Any]]:
        from ibkr_provider.client.errors import IbkrValidationError
        from ibkr_provider.client.rebalance import Holding, check_targets, plan_rebalance
        from ibkr_provider.hooks.ibkr import IbkrHook

        params = get_current_context()["params"]
        client = IbkrHook().get_conn()
        account = params["account_id"] or client.config.account_id
        if not account:
            raise IbkrValidationError("account_id", "set the param or the connection's account_id")
        targets = check_targets(params["targets"])
        net_liq = float(client.account_summary(account).net_liquidation or 0)
        holdings = {
            p.conid: Holding(p.conid, p.quantity, float(p.market_value or 0))
            for p in client.all_positions(account)
        }
        conids = client.market_data.resolve_conids(targets)
        quotes = client.market_data.snapshot(list(conids.values()))
        prices = {s: float(quotes[c].last or 0) for s, c in conids.items()}
        orders = plan_rebalance(
            net_liquidation=net_liq,
            targets=targets,
            conids=conids,
            prices=prices,
            holdings=holdings,
            drift_band=float(params["drift_band"]),
            min_trade=float(params["min_trade"]),
        )
        get_current_context()["ti"].xcom_push(key="plan", value=[o.as_dict() for o in orders])
        log.info("Rebalance plan for %s (net liquidation %.2f): %d order(s)", account, net_liq, len(orders))
        for o in orders:
            log.info(
                "  %-5s %-4s %8g @ %9.2f = %12.2f  (weight %.2f%% -> %.2f%%)",
                o.symbol,
                o.side,
                o.quantity,
                o.price,
                o.value,
                o.current_weight * 100,
                o.target_weight * 100,
            )
        limit = params["order_type"] == "LMT"
        offset = float(params["limit_offset"])
        return [
            {
                "account_id": account,
                "conid": o.conid,
                "side": o.side,
                "quantity": o.quantity,
                "order_type": params["order_type"],
                "limit_price": round(o.price * (1 - offset if o.side == "BUY" else 1 + offset), 2)
                if limit
                else None,
                "dry_run": params["dry_run"],
                "allow_live": params["allow_live"],
                "allowed_message_ids": list(params["allowed_message_ids"] or []),
            }
            for o in orders
        ]

    orders = plan()
    placed = IbkrPlaceOrderOperator.partial(task_id="place_order").expand_kwargs(orders)

    @task(trigger_rule="none_failed")
    def placed_order_ids(results: list[dict[str, Any]]) -> list[str]:
        return [str(r["order_id"]) for r in results if r and r.get("order_id")]

    waits = IbkrOrderStatusSensor.partial(
        task_id="wait_for_fill", deferrable=True, poke_interval=FILL_POLL_SECONDS, timeout=6 * 3600
    ).expand(order_id=placed_order_ids(placed.output))

    @task(trigger_rule="none_failed")
    def summary(orders: list[dict[str, Any]], results: list[dict[str, Any]]) -> dict[str, Any]:
        context = get_current_context()
        rows = [dict(r) for r in results if r]
        planned = context["ti"].xcom_pull(task_ids="plan", key="plan") or []
        report = {
            "dry_run": all(r.get("dry_run") for r in rows) if rows else True,
            "plan": planned,
            "orders": rows,
        }
        folder = context["params"]["output_dir"] or DEFAULT_OUTPUT
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"rebalance_{re.sub(r'[^A-Za-z0-9_.-]+', '_', context['run_id'])}.json")
        with open(path, "w") as handle:
            json.dump(report, handle, indent=1)
        log.info(
            "Rebalance summary (%d order(s), dry run: %s) written to %s", len(rows), report["dry_run"], path
        )
        return {"path": path, "orders": len(rows), "dry_run": report["dry_run"]}

    waits >> summary(orders, placed.output)
