"""
### IBKR weekly dollar-cost averaging

On the **first New York trading day of each week** at 10:00 (Monday, or Tuesday after a Monday
holiday: an exchange calendar, not cron), invests a fixed cash amount in each of the given symbols
with cash-quantity market orders. When the account's cash (and IBKR's available funds) are short
of the total, the run is skipped with a clear log line: nothing is ordered, nothing is borrowed.

*Times in the UI*: Airflow shows them in the time zone picked at the bottom left of the UI
(UTC unless you change it), not in New York's: 10:00 New York is 15:00 UTC in winter and 14:00 UTC in summer.

- `amounts`: symbol -> cash amount per run, e.g. `{"VTI": 500, "VXUS": 250}`.
- `account_id` is required (a DAG that places orders never falls back to the connection's).
- **A dry run by default** (IBKR what-if only); set `dry_run` to false to place orders. A live
  account also needs `allow_live`. Retries never place an order twice.
- **approve**: with `dry_run` false a person approves the purchases (amount, IBKR's last price and
  what-if each) on Airflow's "Required actions" page within `approval_timeout_minutes`, as one of
  `approvers` when given; a paper account needs no approval with `auto_approve_paper`. Reject or
  timeout: nothing is bought. A purchase whose price moved more than `max_price_drift` since the
  approval is refused.
- With `journal_conn_id` (default `ibkr_journal`; empty: none) the plan, the decision and every
  order go to the trade journal, and the `ibkr_trade_journal` Asset gets an event per run.
- A scheduled run starting more than `max_start_delay_minutes` late skips instead of trading.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task

from ibkr_provider.failures import fail_fast
from ibkr_provider.hooks.journal import TRADE_JOURNAL_ASSET
from ibkr_provider.notifications import email_notifiers_from_env
from ibkr_provider.operators.approval import IbkrPlanApprovalOperator
from ibkr_provider.operators.orders import IbkrPlaceOrderOperator
from ibkr_provider.timetables import TradingDayTimetable

#: With IBKR_NOTIFY_EMAIL set: the approval request, the decision, each order and each fill by
#: email through the SMTP connection IBKR_NOTIFY_SMTP_CONN_ID (default smtp_default).
NOTIFY = email_notifiers_from_env()

with DAG(
    dag_id="ibkr_dca",
    schedule=TradingDayTimetable(every="week", at="10:00", calendar="XNYS", timezone="America/New_York"),
    start_date=pendulum.datetime(2026, 1, 1, tz="America/New_York"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "account_id": Param(
            None, type=["string", "null"], description="Account to invest from (required: e.g. U1234567)."
        ),
        "amounts": Param({"VTI": 500, "VXUS": 250}, type="object", description="symbol -> cash per run"),
        "max_start_delay_minutes": Param(
            60, type="integer", minimum=1, description="A scheduled run starting later than this skips."
        ),
        "dry_run": Param(True, type="boolean", description="What-if only; set false to place orders."),
        "allow_live": Param(
            False, type="boolean", description="Needed (with dry_run false) for a live account."
        ),
        "allowed_message_ids": Param(None, type=["array", "null"], description="IBKR prompt ids to confirm."),
        "auto_approve_paper": Param(
            False, type="boolean", description="Buy on a paper account without asking a person."
        ),
        "approvers": Param(
            [], type="array", description="Airflow user names who may approve; empty: anyone allowed."
        ),
        "approval_timeout_minutes": Param(
            60, type="integer", minimum=1, description="Unanswered this long: rejected, nothing bought."
        ),
        "max_price_drift": Param(
            0.01,
            type="number",
            minimum=0,
            maximum=0.2,
            description="Refuse to buy when a price moved more than this fraction since the approval.",
        ),
        "journal_conn_id": Param(
            "ibkr_journal",
            type="string",
            description="Connection of the trade journal (plans, decisions, orders); empty: none.",
        ),
    },
    tags=["ibkr", "orders"],
    doc_md=__doc__,
):

    @task
    @fail_fast("IBKR DCA plan")
    def plan_purchases() -> list[dict[str, Any]]:
        from airflow.sdk.exceptions import AirflowSkipException

        from ibkr_provider.hooks.ibkr import IbkrHook
        from ibkr_provider.tasks import account_for_this_run
        from ibkr_provider.workflows.dca import plan_purchases as plan_for

        context = get_current_context()
        params = context["params"]
        account = account_for_this_run(context)
        with IbkrHook() as hook:
            plan = plan_for(hook.get_conn(), account, params["amounts"])
            if (reason := plan.shortfall()) is not None:
                raise AirflowSkipException(reason)
            plan = plan.previewed(hook.get_conn())
        context["ti"].xcom_push(key="plan", value=plan.as_json())
        return plan.order_kwargs(
            dry_run=params["dry_run"],
            allow_live=params["allow_live"],
            allowed_message_ids=params["allowed_message_ids"],
        )

    purchases = plan_purchases()
    approve = IbkrPlanApprovalOperator(
        task_id="approve",
        plan_task_id="plan_purchases",
        dry_run="{{ params.dry_run }}",
        allow_live="{{ params.allow_live }}",
        auto_approve_paper="{{ params.auto_approve_paper }}",
        approvers="{{ params.approvers }}",
        approval_timeout_minutes="{{ params.approval_timeout_minutes }}",
        journal_conn_id="{{ params.journal_conn_id }}",
        notifiers=NOTIFY,
    )
    bought = IbkrPlaceOrderOperator.partial(
        task_id="buy",
        map_index_template="{{ task.label }}",
        approved_plan_hash="{{ ti.xcom_pull(task_ids='approve')['plan_hash'] }}",
        max_price_drift="{{ params.max_price_drift }}",
        journal_conn_id="{{ params.journal_conn_id }}",
        notifiers=NOTIFY,
    ).expand_kwargs(purchases)
    purchases >> approve >> bought

    @task(trigger_rule="none_failed", outlets=[TRADE_JOURNAL_ASSET])
    def journal_event() -> dict[str, Any]:
        from ibkr_provider.hooks.journal import announce_journal_rows

        context = get_current_context()
        return announce_journal_rows(context, context["params"]["journal_conn_id"])

    bought >> journal_event()
