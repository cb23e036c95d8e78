"""The tests' ``airflow`` commands, forked from a warm interpreter (tests/support/
airflow_fork_server.py), behave as the command started fresh: the configuration they act on
comes from the test's environment and home, not the server's, and they exit as it exits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from scripts.local_airflow import ROOT as REPO_ROOT
from scripts.local_airflow import airflow_env, run_airflow
from tests.support.airflow_cli import AirflowCli


def test_a_forked_command_reads_the_configuration_a_fresh_one_reads(
    airflow_cli: AirflowCli, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = airflow_env(home, tmp_path / "dags", AIRFLOW__IBKR__SESSION_CACHE_DIR=str(tmp_path / "cache"))
    # The fresh process writes the home's airflow.cfg (with its generated secrets); the forked
    # one must read that file, the environment's overrides and the defaults expanded for this home.
    fresh = run_airflow(["config", "list", "--show-values"], env, timeout=120)
    forked = airflow_cli.run(["config", "list", "--show-values"], env, timeout=120)
    assert fresh.returncode == forked.returncode == 0, forked.stderr[-2000:]
    assert f"base_log_folder = {home}/logs" in forked.stdout
    assert f"session_cache_dir = {tmp_path / 'cache'}" in forked.stdout
    assert forked.stdout == fresh.stdout


def test_a_failing_forked_command_exits_with_the_commands_code_and_message(
    airflow_cli: AirflowCli, tmp_path: Path
) -> None:
    unmigrated = tmp_path / "home"
    unmigrated.mkdir()
    result = airflow_cli.run(["dags", "list-import-errors"], airflow_env(unmigrated, tmp_path / "dags"))
    assert result.returncode == 1
    assert "Database migration required" in result.stderr


def test_a_forked_command_takes_the_task_supervisors_timings_from_its_configuration(tmp_path: Path) -> None:
    """Airflow reads the task supervisor's timings once, when the module is imported, and the fork
    server's warm-up imports it with the server's configuration: a child must set them again from
    the test's (the tests' LocalExecutor heartbeats every second). Run in a process of its own,
    as the server's child reloads its configuration."""
    home = tmp_path / "home"
    home.mkdir()
    script = "\n".join(
        [
            "import importlib, os",
            "from tests.support import airflow_fork_server as server",
            "supervisor = importlib.import_module('airflow.sdk.execution_time.supervisor')",
            "assert supervisor.MIN_HEARTBEAT_INTERVAL == 5, supervisor.MIN_HEARTBEAT_INTERVAL",
            "os.environ['AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL'] = '1'",
            "os.environ['AIRFLOW__CORE__TASK_SUCCESS_OVERTIME'] = '7'",
            "server._reload_airflow_configuration()",
            "print(supervisor.MIN_HEARTBEAT_INTERVAL, supervisor.TASK_OVERTIME_THRESHOLD)",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=airflow_env(home, tmp_path / "dags"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["1", "7.0"], result.stdout[-2000:]
