"""Test-only DAG: deliberately logs and prints every IBKR secret, so a test can prove that the
provider registered each of them with Airflow's masker (the task log must show only ***)."""

from __future__ import annotations

import json
import logging
import os

import pendulum
from airflow.sdk import dag, task

log = logging.getLogger(__name__)


@dag(
    dag_id="ibkr_mask_probe", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False
)
def ibkr_mask_probe() -> None:
    @task
    def leak_everything() -> None:
        from ibkr_provider.hooks.ibkr import IbkrHook

        client = IbkrHook().get_conn()
        client.connect()
        client.tickle()
        record = client.sessions.current
        assert record is not None and record.access_token and record.bearer
        key_body = [
            line for line in (client.config.private_key_pem or "").splitlines() if "-----" not in line
        ]
        secrets = {"bearer": record.bearer, "access_token": record.access_token, "key_line": key_body[3]}
        with open(os.environ["IBKR_MASK_PROBE_OUT"], "w") as handle:
            json.dump(secrets, handle)
        for name, value in secrets.items():
            log.info("leak via logging: %s=%s", name, value)
            print(f"leak via print: {name}={value}")
        log.info("leak of the whole key: %s", client.config.private_key_pem)

    leak_everything()


ibkr_mask_probe()
