"""What a retry cannot fix fails the task on its first try; what it can fix is retried.

Real `airflow dags test` runs of the example DAGs (which keep `retries=2`) against the sandbox.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ibkr_sandbox.process import RunningSandbox

from scripts.local_airflow import airflow_env
from tests.support.airflow_cli import AirflowCli, dag_folder

NOT_RETRIED = "Not retried: retrying cannot fix this."


def _task_rows(home: Path, dag_id: str) -> list[tuple[str, int, str]]:
    with sqlite3.connect(home / "airflow.db") as db:
        return db.execute(
            "SELECT task_id, try_number, state FROM task_instance WHERE dag_id = ? "
            "ORDER BY task_id, map_index",
            (dag_id,),
        ).fetchall()


def test_a_live_plan_without_allow_live_fails_at_once_before_anyone_is_asked(
    fresh_airflow_home: Path, fresh_sandbox: RunningSandbox, tmp_path: Path, airflow_cli: AirflowCli
) -> None:
    env = airflow_env(
        fresh_airflow_home,
        dag_folder(tmp_path, "ibkr_rebalance"),
        AIRFLOW_CONN_IBKR_DEFAULT=fresh_sandbox.connection_json(),
    )
    conf = {
        "account_id": "U3456789",  # flagged live
        "targets": {"SPY": 0.2, "VTI": 0.2, "BND": 0.2, "GLD": 0.2},
        "dry_run": False,
        "output_dir": str(tmp_path / "out"),
    }
    output = _run_until_the_task_fails_once(
        airflow_cli, fresh_airflow_home, env, "ibkr_rebalance", "approve", conf
    )
    rows = _task_rows(fresh_airflow_home, "ibkr_rebalance")
    assert [r for r in rows if r[0] == "approve"], output[-4000:]  # refused before anyone is asked
    assert all(r[2] in (None, "skipped", "upstream_failed") for r in rows if r[0] == "place_order"), rows
    assert "IBKR does not report U3456789 as a paper account" in output and NOT_RETRIED in output
    stats = fresh_sandbox.stats()
    sent = [p for p in stats["paths"] if p.endswith("/orders") or "/reply/" in p]
    assert sent == [] and stats.get("orders_placed", 0) == 0, stats["paths"]  # the plan's what-ifs only


def test_a_wrong_private_key_fails_the_snapshot_at_once_with_one_login_attempt(
    fresh_airflow_home: Path, fresh_sandbox: RunningSandbox, tmp_path: Path, airflow_cli: AirflowCli
) -> None:
    wrong = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    env = airflow_env(
        fresh_airflow_home,
        dag_folder(tmp_path, "ibkr_portfolio_snapshot"),
        AIRFLOW_CONN_IBKR_DEFAULT=fresh_sandbox.connection_json(private_key=wrong),
    )
    result = airflow_cli.run(["dags", "test", "ibkr_portfolio_snapshot"], env, timeout=300)
    output = result.stdout + result.stderr
    assert _task_rows(fresh_airflow_home, "ibkr_portfolio_snapshot") == [
        ("snapshot_portfolio", 1, "failed")
    ], output[-4000:]
    assert "IbkrAuthError" in output and "signature verification failed" in output and NOT_RETRIED in output
    stats = fresh_sandbox.stats()
    assert stats["token_requests"] == 1 and stats.get("sso_sessions", 0) == 0


def test_an_invalid_flex_token_fails_the_export_at_once_naming_the_token(
    fresh_airflow_home: Path, fresh_sandbox: RunningSandbox, tmp_path: Path, airflow_cli: AirflowCli
) -> None:
    env = airflow_env(
        fresh_airflow_home,
        dag_folder(tmp_path, "ibkr_flex_report"),
        AIRFLOW_CONN_IBKR_FLEX_DEFAULT=fresh_sandbox.flex_connection_json(password="1" * 24),
    )
    conf = json.dumps({"output_dir": str(tmp_path / "flex")})
    result = airflow_cli.run(["dags", "test", "ibkr_flex_report", "-c", conf], env, timeout=300)
    output = result.stdout + result.stderr
    assert _task_rows(fresh_airflow_home, "ibkr_flex_report") == [("export_flex_report", 1, "failed")], (
        output[-4000:]
    )
    assert "Flex error 1015: Token is invalid" in output and "Flex token" in output and NOT_RETRIED in output
    assert "1" * 24 not in output
    assert fresh_sandbox.stats()["flex_send_requests"] == 1


def test_a_transient_fault_beyond_the_clients_retries_is_retried_by_airflow(
    fresh_airflow_home: Path, fresh_sandbox: RunningSandbox, tmp_path: Path, airflow_cli: AirflowCli
) -> None:
    """503 on the positions page for longer than the client's own retry budget fails the first
    try; the fault is gone by the second, which succeeds."""
    env = airflow_env(
        fresh_airflow_home,
        dag_folder(tmp_path, "ibkr_snapshot_retry"),
        AIRFLOW_CONN_IBKR_DEFAULT=fresh_sandbox.connection_json(max_retries=1, max_retry_seconds=2),
    )
    fresh_sandbox.inject_fault("/v1/api/portfolio/DU2345678/positions/0", "503", count=2)
    result = airflow_cli.run(["dags", "test", "ibkr_snapshot_retry"], env, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert _task_rows(fresh_airflow_home, "ibkr_snapshot_retry") == [("snapshot_portfolio", 2, "success")], (
        output[-4000:]
    )
    stats = fresh_sandbox.stats()
    assert stats["faults_fired"] == 2
    assert stats["paths"]["GET /v1/api/portfolio/DU2345678/positions/0"] == 3
    assert NOT_RETRIED not in output


def _run_until_the_task_fails_once(
    airflow_cli: AirflowCli,
    home: Path,
    env: dict[str, str],
    dag_id: str,
    task_id: str,
    conf: dict[str, object],
) -> str:
    """Run the DAG; its output once ``task_id`` failed for good. A retry shows in seconds: the
    run is stopped as soon as the task is ``up_for_retry`` (instead of sitting out its retry
    delay, which would make a broken fail-fast show only as a timeout minutes later)."""
    run = airflow_cli.start(["dags", "test", dag_id, "-c", json.dumps(conf)], env)
    deadline = time.monotonic() + 240
    try:
        while run.poll() is None:
            states = [row[2] for row in _task_rows(home, dag_id) if row[0] == task_id]
            assert "up_for_retry" not in states, f"{dag_id}.{task_id} is waiting to be retried: {states}"
            assert time.monotonic() < deadline, f"{dag_id} still running after 240 s"
            time.sleep(0.3)
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    tries = [row[1:] for row in _task_rows(home, dag_id) if row[0] == task_id]
    assert tries and all(t == (1, "failed") for t in tries), (tries, output[-4000:])
    return output


@pytest.mark.parametrize(
    ("dag_id", "task_id", "conf", "cause"),
    [
        (
            "ibkr_rebalance",
            "plan",
            {"account_id": "DU2345678", "targets": {"NOPE": 0.1}},
            "IbkrNotFoundError",
        ),
        (
            "ibkr_dca",
            "plan_purchases",
            {"account_id": "DU2345678", "amounts": {"NOPE": 100}},
            "IbkrNotFoundError",
        ),
        ("ibkr_risk_monitor", "check_risk", {"accounts": ["ZZ9999999"]}, "accountId is not valid"),
        ("ibkr_rebalance", "plan", {"targets": {"VTI": 0.1}}, "IbkrValidationError: account_id"),
    ],
)
def test_each_dag_task_fails_at_once_on_what_a_retry_cannot_fix(
    fresh_airflow_home: Path,
    fresh_sandbox: RunningSandbox,
    tmp_path: Path,
    airflow_cli: AirflowCli,
    dag_id: str,
    task_id: str,
    conf: dict[str, object],
    cause: str,
) -> None:
    """An unknown symbol, an account IBKR refuses, a missing account: the DAG's own @fail_fast
    tasks fail on their first try, naming the cause."""
    env = airflow_env(
        fresh_airflow_home,
        dag_folder(tmp_path, dag_id),
        AIRFLOW_CONN_IBKR_DEFAULT=fresh_sandbox.connection_json(),
    )
    output = _run_until_the_task_fails_once(airflow_cli, fresh_airflow_home, env, dag_id, task_id, conf)
    assert cause in output and NOT_RETRIED in output, output[-4000:]
    assert fresh_sandbox.stats().get("orders_placed", 0) == 0
