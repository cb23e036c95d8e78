"""Test-only DAG: a burst of ``count`` paper market fills, ``gap`` seconds apart, sent straight
to IBKR's order endpoint (the provider's own placement checks live orders first, which IBKR
paces at 1 per 5 s). The cluster test restarts the triggerer in the middle of it."""

from __future__ import annotations

import time

import pendulum
from airflow.sdk import Param, dag, task

VTI = 12340038


@dag(
    dag_id="ibkr_fill_burst",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"count": Param(6, type="integer"), "gap": Param(1.0, type="number")},
)
def ibkr_fill_burst() -> None:
    @task
    def burst(params: dict[str, float] | None = None) -> list[str]:
        from ibkr_provider.client.models.orders import OrderTicket
        from ibkr_provider.hooks.ibkr import IbkrHook

        count, gap = int((params or {})["count"]), float((params or {})["gap"])
        coids = []
        with IbkrHook() as hook:
            client = hook.get_conn()
            for i in range(count):
                coid = f"burst-{i}-{time.time_ns()}"
                ticket = OrderTicket(conid=VTI, side="BUY", quantity=1, coid=coid)
                client.request(
                    "POST",
                    "/iserver/account/DU2345678/orders",
                    json={"orders": [ticket.to_json("DU2345678")]},
                )
                coids.append(coid)
                time.sleep(gap)
        return coids

    burst()


ibkr_fill_burst()
