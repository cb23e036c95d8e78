"""
### IBKR risk monitor

Every hour of US market hours on New York trading days (10:15 to 16:15; exchange holidays and
the hours after an early close skipped: an exchange calendar, not cron), checks every account (or `accounts`)
against thresholds and **fails with a readable message naming each breach**, so Airflow's
failure alerts (email, Slack callbacks) tell you what is wrong:

- margin cushion (excess liquidity / net liquidation) below `min_cushion`;
- excess liquidity below `min_excess_liquidity`;
- daily PnL below `-max_daily_loss`.

A breach is not retried (it is a finding, not a glitch); IBKR errors are.

*Times in the UI*: Airflow shows them in the time zone picked at the bottom left of the UI (UTC
unless you change it), not in New York's: 10:15 New York is 15:15 UTC in winter and 14:15 UTC in
summer.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from ibkr_provider.failures import fail_fast
from ibkr_provider.timetables import TradingDayTimetable

with DAG(
    dag_id="ibkr_risk_monitor",
    schedule=TradingDayTimetable(
        every="day",
        at=[f"{hour}:15" for hour in range(10, 17)],
        calendar="XNYS",
        timezone="America/New_York",
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="America/New_York"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "accounts": Param(
            None, type=["array", "null"], description="Accounts to check; empty means every account."
        ),
        "min_cushion": Param(
            0.10, type="number", minimum=0, maximum=1, description="Smallest margin cushion."
        ),
        "min_excess_liquidity": Param(10_000, type="number", description="Smallest excess liquidity."),
        "max_daily_loss": Param(
            5_000, type="number", minimum=0, description="Largest acceptable daily loss."
        ),
    },
    tags=["ibkr", "risk"],
    doc_md=__doc__,
):

    @task
    @fail_fast("IBKR risk check")
    def check_risk() -> dict[str, dict[str, str | None]]:
        from ibkr_provider.hooks.ibkr import IbkrHook
        from ibkr_provider.workflows.risk import RiskLimits, account_risks

        params = get_current_context()["params"]
        limits = RiskLimits.from_params(params)
        with IbkrHook() as hook:
            risks = account_risks(hook.get_conn(), params["accounts"])
        breaches = [line for risk in risks for line in risk.breaches(limits)]
        if breaches:
            raise AirflowFailException("IBKR risk limits breached:\n- " + "\n- ".join(breaches))
        return {risk.account_id: risk.as_json() for risk in risks}

    check_risk()
