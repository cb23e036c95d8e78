"""
### IBKR weekly dollar-cost averaging

Every Monday at 10:00 New York time, invests a fixed cash amount in each of the given symbols
with cash-quantity market orders. When the account's available funds are short of the total,
the run is skipped with a clear log line (nothing is ordered).

- `amounts`: symbol -> cash amount per run, e.g. `{"VTI": 500, "VXUS": 250}`.
- **A dry run by default** (IBKR what-if only); set `dry_run` to false to place orders. A live
  account also needs `allow_live`. Retries never place an order twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from ibkr_provider.failures import fail_fast
from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

log = logging.getLogger(__name__)

with DAG(
    dag_id="ibkr_dca",
    schedule="0 10 * * 1",
    start_date=pendulum.datetime(2026, 1, 1, tz="America/New_York"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "account_id": Param(
            None, type=["string", "null"], description="Account to invest from; empty: the connection's."
        ),
        "amounts": Param({"VTI": 500, "VXUS": 250}, type="object", description="symbol -> cash per run"),
        "dry_run": Param(True, type="boolean", description="What-if only; set false to place orders."),
        "allow_live": Param(
            False, type="boolean", description="Needed (with dry_run false) for a live account."
        ),
        "allowed_message_ids": Param(None, type=["array", "null"], description="IBKR prompt ids to confirm."),
    },
    tags=["ibkr", "orders"],
    doc_md=__doc__,
):

    @task
    @fail_fast("IBKR DCA plan")
    def plan_purchases() -> list[dict[str, Any]]:
        from ibkr_provider.client.errors import IbkrValidationError
        from ibkr_provider.hooks.ibkr import IbkrHook

        params = get_current_context()["params"]
        amounts = {str(s).upper(): float(v) for s, v in params["amounts"].items()}
        if not amounts or any(v <= 0 for v in amounts.values()):
            raise IbkrValidationError("amounts", 'give symbol -> positive cash amount, e.g. {"VTI": 500}')
        client = IbkrHook().get_conn()
        account = params["account_id"] or client.config.account_id
        if not account:
            raise IbkrValidationError("account_id", "set the param or the connection's account_id")
        available = float(client.account_summary(account).amount("availablefunds") or 0)
        needed = sum(amounts.values())
        if available < needed:
            log.warning(
                "Skipping DCA for %s: available funds %.2f are short of the %.2f needed",
                account,
                available,
                needed,
            )
            raise AirflowSkipException(f"available funds {available:.2f} < {needed:.2f} needed")
        conids = client.market_data.resolve_conids(amounts)
        log.info("DCA for %s: %s (available funds %.2f)", account, amounts, available)
        return [
            {
                "account_id": account,
                "conid": conids[symbol],
                "side": "BUY",
                "cash_quantity": amount,
                "dry_run": params["dry_run"],
                "allow_live": params["allow_live"],
                "allowed_message_ids": list(params["allowed_message_ids"] or []),
            }
            for symbol, amount in amounts.items()
        ]

    IbkrPlaceOrderOperator.partial(task_id="buy").expand_kwargs(plan_purchases())
