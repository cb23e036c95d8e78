"""What a retry cannot fix fails the task on its first try; what it can fix is retried.

Real `airflow dags test` runs of the example DAGs (which keep `retries=2`) against the sandbox.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ibkr_sandbox.process import RunningSandbox

from tests.support.airflow_cli import AirflowCli, airflow_env, dag_folder

NOT_RETRIED = "Not retried: retrying cannot fix this."


def _task_rows(home: Path, dag_id: str) -> list[tuple[str, int, str]]:
    with sqlite3.connect(home / "airflow.db") as db:
        return db.execute(
            "SELECT task_id, try_number, state FROM task_instance WHERE dag_id = ? "
            "ORDER BY task_id, map_index",
            (dag_id,),
        ).fetchall()


def test_a_refused_live_order_fails_every_place_task_on_its_first_try(
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
    started = time.monotonic()
    result = airflow_cli.run(["dags", "test", "ibkr_rebalance", "-c", json.dumps(conf)], env, timeout=300)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    places = [r for r in _task_rows(fresh_airflow_home, "ibkr_rebalance") if r[0] == "place_order"]
    assert len(places) >= 2, output[-4000:]
    assert all(row[1:] == (1, "failed") for row in places), places  # no up_for_retry, no 2nd try
    assert "IBKR does not report U3456789 as a paper account" in output and NOT_RETRIED in output
    stats = fresh_sandbox.stats()
    sent = [p for p in stats["paths"] if p.endswith("/orders") or "/reply/" in p]
    assert sent == [] and stats.get("orders_placed", 0) == 0, stats["paths"]  # the plan's what-ifs only
    assert elapsed < 60, elapsed  # retry_delay is 2 minutes: any retry would show


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
