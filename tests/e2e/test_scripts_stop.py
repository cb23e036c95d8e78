"""`make up`, `make cluster` and `make demo` stopped while they are still starting: SIGTERM (twice, half a
second apart, as from an impatient person) stops everything they had started so far, and nothing
of it runs 30 s later (tests/support/scripts.py). The scripts are launched with SIGINT ignored,
as a shell script's background job would be. Their full runs and their stopping once up are in
test_make_up.py and test_celery_cluster.py."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil

from scripts.local_airflow import free_port
from tests.support.scripts import command_line, launch_script, stop_script, user_env


def _children_running(process: subprocess.Popen[bytes], text: str) -> list[str]:
    """The command lines of ``process``'s children that hold ``text``."""
    lines = (command_line(child) for child in psutil.Process(process.pid).children())
    return [line for line in lines if text in line]


def _stopped_once_it_runs(script: str, env: dict[str, str], output: Path, child: str) -> tuple[str, str]:
    """Start ``script``, send SIGTERM as soon as a child process whose command line holds
    ``child`` has started; return what the script printed and that child's command line."""
    process = launch_script(script, env, output)
    try:
        deadline = time.monotonic() + 240
        while not (found := _children_running(process, child)):
            assert process.poll() is None, output.read_text()[-4000:]
            assert time.monotonic() < deadline, f"{script} did not start {child} in 240 s"
            time.sleep(0.2)
    finally:
        stop_script(process, stop_seconds=90)
    return output.read_text(), found[0]


def test_make_up_stopped_while_airflow_boots_leaves_nothing_running(tmp_path: Path) -> None:
    """SIGTERM once `airflow standalone` has been started, before it serves: the script stops it and
    the sandbox. (It used to take SIGTERM's default until Airflow was up, and die alone: standalone,
    a session of its own, kept the UI's port.)"""
    env = user_env(
        IBKR_UP_PORT=str(free_port()), IBKR_UP_HOME=str(tmp_path / "airflow"), IBKR_DAG_PARSE_SECONDS="600"
    )
    printed, _ = _stopped_once_it_runs("up.py", env, tmp_path / "up.log", "airflow standalone")
    assert "Ctrl-C stops" not in printed  # stopped while it booted
    assert "Stopping Airflow and the sandbox" in printed


def test_make_cluster_stopped_while_it_starts_leaves_nothing_running(tmp_path: Path) -> None:
    """SIGTERM once PostgreSQL runs, before Redis, the sandbox and Airflow: what was started is
    stopped, and PostgreSQL's data directory is deleted."""
    work = tmp_path / "cluster"
    env = user_env(IBKR_CLUSTER_PORT=str(free_port()), IBKR_CLUSTER_DIR=str(work))
    printed, postgres = _stopped_once_it_runs("cluster.py", env, tmp_path / "cluster.out", "postgres -D ")
    assert "Ctrl-C stops" not in printed  # stopped while it started
    assert "Stopping the cluster" in printed
    data = Path(postgres.split(" -D ", 1)[1].split(" ", 1)[0])
    assert not data.exists(), data


def test_make_demo_stopped_while_airflow_migrates_leaves_nothing_running(tmp_path: Path) -> None:
    """SIGTERM while `make demo` migrates its Airflow database: the `airflow` command and the
    sandbox stop with it. (It used to take SIGTERM's default and die alone, leaving both.)"""
    env = user_env(IBKR_DEMO_HOME=str(tmp_path / "demo"))
    printed, _ = _stopped_once_it_runs("demo.py", env, tmp_path / "demo.out", "airflow db migrate")
    assert "2/6 Migrating" in printed and "3/6" not in printed
    assert "Interrupted: stopping the sandbox." in printed
    assert (tmp_path / "demo" / "sandbox" / "sandbox.log").exists()  # the moved home holds its state
