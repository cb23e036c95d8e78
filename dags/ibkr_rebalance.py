"""
### IBKR rebalance to target weights

On the **first New York trading day of each month** at 10:00 (exchange holidays skipped: an
exchange calendar, not cron), brings the symbols in `targets` back to their target weights of the
account's net liquidation.

*Times in the UI*: Airflow shows them in the time zone picked at the bottom left of the UI
(UTC unless you change it), not in New York's: 10:00 New York is 15:00 UTC in winter and 14:00 UTC in summer.

1. **plan**: net liquidation, cash, every position and prices from market-data snapshots; a
   symbol trades when its weight drifts more than `drift_band` from target and the trade is worth
   at least `min_trade`. Holdings not in `targets` are left alone (list them with weight 0 to
   sell). **The plan is refused, and nothing placed, when the account cannot pay for it**: the
   targets plus the holdings they leave alone over 100 % of net liquidation, gross exposure after
   the plan over `max_gross_leverage` (1.0: no borrowing), net buys beyond cash, or buys beyond
   IBKR's buying power. Every order is previewed with IBKR's what-if (commission, margin change,
   equity with loan after, IBKR's warnings), logged and kept in the summary.
2. **approve**: with `dry_run` false a person approves the plan on Airflow's "Required actions"
   page (every order, the totals and IBKR's what-if), within `approval_timeout_minutes` (then it
   is rejected), as one of `approvers` when given; a paper account needs no approval with
   `auto_approve_paper`. Reject or timeout: nothing is placed.
3. **place_order** (one mapped task per order, labelled e.g. "BUY 25 AAPL"): **a dry run by
   default** (IBKR what-if only); a real order goes only if it is of the approved plan and its
   price moved less than `max_price_drift` since. Set `dry_run` to false to place; live accounts also need
   `allow_live`. `account_id` is required (no fallback to the connection's account). Retries
   never place an order twice; unknown confirmation prompts fail the task. `order_type` MKT
   (default) or LMT: limit orders buy `limit_offset` below the snapshot price and sell that far
   above it.
4. **wait_for_fill**: deferrable sensors wait for each placed order to fill (also when another
   order of the plan failed: what was placed is followed and journaled, and the run fails), checking every
   `IBKR_REBALANCE_FILL_POLL_SECONDS` (environment, default 30) seconds.
5. **summary**: the plan, IBKR's figures, who decided when, and what happened, also written as
   JSON to `output_dir`.

With `journal_conn_id` (default `ibkr_journal`; empty: none) the plan, the decision, every order,
the state it ended in and each fill (price, quantity, commission) go to the trade journal, each
once however often a task retries, and the `ibkr_trade_journal` Asset gets an event per run with
the rows written.

A scheduled run that starts more than `max_start_delay_minutes` late (a DAG unpaused after its
time runs the missed time at once) skips instead of trading.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task

from ibkr_provider.failures import fail_fast
from ibkr_provider.hooks.journal import TRADE_JOURNAL_ASSET
from ibkr_provider.notifications import email_notifiers_from_env
from ibkr_provider.operators.approval import IbkrPlanApprovalOperator
from ibkr_provider.operators.orders import IbkrPlaceOrderOperator
from ibkr_provider.sensors.order_status import IbkrOrderStatusSensor
from ibkr_provider.timetables import TradingDayTimetable

FILL_POLL_SECONDS = float(os.environ.get("IBKR_REBALANCE_FILL_POLL_SECONDS", "30"))
DEFAULT_OUTPUT = os.path.join(
    os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "ibkr", "rebalance"
)

#: With IBKR_NOTIFY_EMAIL set: the approval request, the decision, each order and each fill by
#: email through the SMTP connection IBKR_NOTIFY_SMTP_CONN_ID (default smtp_default).
NOTIFY = email_notifiers_from_env()

with DAG(
    dag_id="ibkr_rebalance",
    schedule=TradingDayTimetable(every="month", at="10:00", calendar="XNYS", timezone="America/New_York"),
    start_date=pendulum.datetime(2026, 1, 1, tz="America/New_York"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "account_id": Param(
            None, type=["string", "null"], description="Account to rebalance (required: e.g. U1234567)."
        ),
        "targets": Param({"VTI": 0.6, "BND": 0.3, "GLD": 0.1}, type="object", description="symbol -> weight"),
        "drift_band": Param(0.02, type="number", minimum=0, maximum=1, description="Trade past this drift."),
        "min_trade": Param(200, type="number", minimum=0, description="Smallest trade value worth placing."),
        "max_gross_leverage": Param(
            1.0,
            type="number",
            minimum=0.1,
            maximum=4,
            description="Largest gross exposure after the plan, as a multiple of net liquidation (1.0: no "
            "borrowing).",
        ),
        "max_start_delay_minutes": Param(
            60, type="integer", minimum=1, description="A scheduled run starting later than this skips."
        ),
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
        "auto_approve_paper": Param(
            False, type="boolean", description="Place on a paper account without asking a person."
        ),
        "approvers": Param(
            [], type="array", description="Airflow user names who may approve; empty: anyone allowed."
        ),
        "approval_timeout_minutes": Param(
            60, type="integer", minimum=1, description="Unanswered this long: rejected, nothing placed."
        ),
        "journal_conn_id": Param(
            "ibkr_journal",
            type="string",
            description="Connection of the trade journal (plans, decisions, orders, fills); empty: none.",
        ),
        "max_price_drift": Param(
            0.01,
            type="number",
            minimum=0,
            maximum=0.2,
            description="Refuse to place when a price moved more than this fraction since the approval.",
        ),
    },
    tags=["ibkr", "orders"],
    doc_md=__doc__,
):

    @task
    @fail_fast("IBKR rebalance plan")
    def plan() -> list[dict[str, Any]]:
        from ibkr_provider.hooks.ibkr import IbkrHook
        from ibkr_provider.tasks import account_for_this_run
        from ibkr_provider.workflows.rebalance import order_kwargs, plan_for
        from ibkr_provider.workflows.reports import log_plan

        context = get_current_context()
        params = context["params"]
        account = account_for_this_run(context)
        with IbkrHook() as hook:
            planned = plan_for(
                hook.get_conn(),
                account,
                params["targets"],
                drift_band=params["drift_band"],
                min_trade=params["min_trade"],
                max_gross_leverage=params["max_gross_leverage"],
                order_type=params["order_type"],
                limit_offset=params["limit_offset"],
            )
        context["ti"].xcom_push(key="plan", value=planned.as_json())
        log_plan(planned)
        return order_kwargs(
            planned,
            order_type=params["order_type"],
            limit_offset=params["limit_offset"],
            dry_run=params["dry_run"],
            allow_live=params["allow_live"],
            allowed_message_ids=params["allowed_message_ids"],
        )

    orders = plan()
    approve = IbkrPlanApprovalOperator(
        task_id="approve",
        plan_task_id="plan",
        dry_run="{{ params.dry_run }}",
        allow_live="{{ params.allow_live }}",
        auto_approve_paper="{{ params.auto_approve_paper }}",
        approvers="{{ params.approvers }}",
        approval_timeout_minutes="{{ params.approval_timeout_minutes }}",
        journal_conn_id="{{ params.journal_conn_id }}",
        notifiers=NOTIFY,
    )
    placed = IbkrPlaceOrderOperator.partial(
        task_id="place_order",
        map_index_template="{{ task.label }}",
        approved_plan_hash="{{ ti.xcom_pull(task_ids='approve')['plan_hash'] }}",
        max_price_drift="{{ params.max_price_drift }}",
        journal_conn_id="{{ params.journal_conn_id }}",
        notifiers=NOTIFY,
    ).expand_kwargs(orders)
    orders >> approve >> placed

    # every order that was placed is followed to its end and journaled, also when another
    # order of the plan failed (the run still fails: summary needs every placement)
    @task(trigger_rule="all_done_min_one_success")
    def placed_order_ids(results: Any) -> list[str]:
        return [str(r["order_id"]) for r in results[:] if r and r.get("order_id")]

    waits = IbkrOrderStatusSensor.partial(
        task_id="wait_for_fill",
        deferrable=True,
        poke_interval=FILL_POLL_SECONDS,
        timeout=6 * 3600,
        journal_conn_id="{{ params.journal_conn_id }}",
        notifiers=NOTIFY,
    ).expand(order_id=placed_order_ids(placed.output))

    @task(trigger_rule="none_failed", outlets=[TRADE_JOURNAL_ASSET])
    def summary(results: Any) -> dict[str, Any]:
        from ibkr_provider.hooks.journal import announce_journal_rows
        from ibkr_provider.workflows.reports import write_run_summary

        context = get_current_context()
        planned = context["ti"].xcom_pull(task_ids="plan", key="plan") or {}
        decision = context["ti"].xcom_pull(task_ids="approve") or {}
        folder = context["params"]["output_dir"] or DEFAULT_OUTPUT
        done = [dict(r) for r in results[:] if r]
        report = write_run_summary(folder, context["run_id"], planned, done, decision)
        report["journal"] = announce_journal_rows(context, context["params"]["journal_conn_id"])
        return report

    waits >> summary(placed.output)
