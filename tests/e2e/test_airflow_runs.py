"""Real `airflow dags test` runs of the order and Flex paths against the sandbox: reschedule
mode, an Airflow retry that adopts an order whose answer was lost, and the Flex export DAG.

The deferrable wait is run twice elsewhere: inline under `airflow dags test` by the rebalance
DAG's limit orders (test_dags.py, the trigger polling resting orders until the prices cross),
and in a real triggerer by ``ibkr_order_and_wait`` (test_celery_cluster.py, deferred with its
worker slot freed)."""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from pathlib import Path

from ibkr_sandbox.prices import PricePath
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrClient, IbkrClientConfig
from scripts.local_airflow import airflow_env
from tests.support.airflow_cli import AirflowCli, dag_folder

VTI = 12340038


def test_flex_report_dag_runs_under_airflow_dags_test(
    fresh_sandbox: RunningSandbox, tmp_path: Path, fresh_airflow_home: Path, airflow_cli: AirflowCli
) -> None:
    fresh_sandbox.configure(flex_min_interval=0)
    home = fresh_airflow_home
    out = tmp_path / "flex"
    env = airflow_env(
        home,
        dag_folder(tmp_path, "ibkr_flex_report"),
        AIRFLOW_CONN_IBKR_FLEX_DEFAULT=fresh_sandbox.flex_connection_json(extra={"poll_interval": 0.5}),
    )
    result = airflow_cli.run(
        ["dags", "test", "ibkr_flex_report", "-c", json.dumps({"output_dir": str(out)})], env
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (raw,) = out.glob("flex_*.xml")
    assert raw.read_bytes().startswith(b"<FlexQueryResponse")
    positions = next(out.glob("flex_*_OpenPositions.csv"))
    assert len(list(csv.DictReader(positions.open()))) == 282
    assert fresh_sandbox.stats()["flex_1019"] == 2  # the default pending polls, survived


def _status_polls(sandbox: RunningSandbox) -> int:
    return sum(v for k, v in sandbox.stats()["paths"].items() if "/order/status/" in k)


def test_reschedule_mode_waits_for_a_fill_by_the_price_model(
    fresh_sandbox: RunningSandbox, tmp_path: Path, fresh_airflow_home: Path, airflow_cli: AirflowCli
) -> None:
    """The sensor in ``reschedule`` mode under real Airflow. The market clock is stopped, so the
    order rests until the test steps the price model; nothing sets a price."""
    path = PricePath(seed=0, volatility=0.02)
    ahead = [path.price(VTI, 289.0, 0, tick) for tick in range(1, 41)]
    limit = min(ahead)
    assert limit < 289.0
    home = fresh_airflow_home
    env = airflow_env(
        home,
        dag_folder(tmp_path, "ibkr_order_reschedule"),
        AIRFLOW_CONN_IBKR_DEFAULT=fresh_sandbox.connection_json(),
    )
    run = airflow_cli.start(
        ["dags", "test", "ibkr_order_reschedule", "-c", json.dumps({"limit_price": limit})], env
    )
    try:
        deadline = time.monotonic() + 180
        while _status_polls(fresh_sandbox) == 0:  # until the sensor has seen the order resting
            assert run.poll() is None and time.monotonic() < deadline, "the sensor never poked"
            time.sleep(0.2)
        steps = 0
        while run.poll() is None and steps < len(ahead):
            fresh_sandbox.step_market(1)
            steps += 1
            time.sleep(0.3)
        output, _ = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, output[-4000:]
    with sqlite3.connect(home / "airflow.db") as db:
        reschedules = db.execute(
            "SELECT count(*) FROM task_reschedule r JOIN task_instance t ON t.id = r.ti_id "
            "WHERE t.task_id = 'wait_for_fill'"
        ).fetchone()[0]
        (xcom,) = db.execute(
            "SELECT value FROM xcom WHERE task_id = 'wait_for_fill' AND key = 'return_value'"
        ).fetchone()
    assert reschedules >= 1
    assert json.loads(xcom)["order_status"] == "Filled"
    assert fresh_sandbox.stats()["orders_placed"] == 1
    client = IbkrClient(
        IbkrClientConfig.from_mapping(fresh_sandbox.client_config_values(session_cache="memory"))
    )
    (order,) = client.orders.live_orders()
    client.close()
    # Filled at the path's low, a price nobody set: the model crossed the limit.
    assert order.status == "Filled" and order.raw["avgPrice"] == f"{limit:.4f}"


def test_an_airflow_retry_after_a_lost_answer_adopts_the_order(
    fresh_sandbox: RunningSandbox, tmp_path: Path, fresh_airflow_home: Path, airflow_cli: AirflowCli
) -> None:
    """The real case: the order reaches IBKR, its answer is lost, the task fails and Airflow
    retries it. The retry finds the order by its cOID and adopts it: one order, two tries."""
    home = fresh_airflow_home
    env = airflow_env(
        home,
        dag_folder(tmp_path, "ibkr_place_retry"),
        AIRFLOW_CONN_IBKR_DEFAULT=fresh_sandbox.connection_json(),
    )
    fresh_sandbox.inject_fault("/v1/api/iserver/account/DU2345678/orders", "drop_after", method="POST")
    result = airflow_cli.run(["dags", "test", "ibkr_place_retry"], env, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    stats = fresh_sandbox.stats()
    assert stats["faults_fired"] == 1
    assert stats["orders_placed"] == 1
    assert stats["paths"]["POST /v1/api/iserver/account/DU2345678/orders"] == 1  # the retry never re-sent it
    with sqlite3.connect(home / "airflow.db") as db:
        (state, try_number) = db.execute(
            "SELECT state, try_number FROM task_instance WHERE dag_id = 'ibkr_place_retry'"
        ).fetchone()
        (xcom,) = db.execute(
            "SELECT value FROM xcom WHERE dag_id = 'ibkr_place_retry' AND key = 'return_value'"
        ).fetchone()
    assert (state, try_number) == ("success", 2)
    placed = json.loads(xcom)
    assert placed["adopted"] is True and placed["status"] == "Filled"
    assert placed["coid"].startswith("af-")
