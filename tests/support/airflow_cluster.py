"""A real multi-process Airflow for tests: a migrated SQLite home, an api-server on a free
loopback port, and ``airflow dags test --use-executor`` with LocalExecutor, so every task runs in
its own supervised process exactly as in production (recipe: airflow-3-providers.md section 10).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from scripts.local_airflow import AIRFLOW, airflow_env, free_port, run_airflow
from scripts.local_airflow import ROOT as REPO_ROOT


@contextmanager
def airflow_cluster(
    home: Path, dags_folder: Path, parallelism: int = 8, **extra_env: str
) -> Iterator[dict[str, str]]:
    """Yield the environment for ``airflow dags test --use-executor`` against a running api-server."""
    port = free_port()
    env = airflow_env(
        home,
        dags_folder,
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM=str(parallelism),
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API_AUTH__JWT_SECRET="test-only-jwt-secret-for-the-local-api-server",
        # A task's supervisor notices that its finished task process exited only at its next
        # heartbeat wake-up (default every 5 s); `dags test --use-executor` waits for every
        # supervisor before it exits, so each run ended up to 5 s after its DAG run had.
        AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL="1",
        **extra_env,
    )
    if not (home / "airflow.db").exists():  # a home copied from the migrated template has it
        migrated = run_airflow(["db", "migrate"], env)
        assert migrated.returncode == 0, migrated.stderr[-3000:]
    log = open(home / "api-server.log", "ab")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError((home / "api-server.log").read_text()[-3000:])
            try:
                if requests.get(f"http://127.0.0.1:{port}/api/v2/version", timeout=2).status_code < 500:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("api-server did not start within 120 s")
            time.sleep(0.5)
        yield env
    finally:
        import os
        import signal

        # SIGKILL, not SIGTERM: the home is thrown away, and a graceful stop cost the test 2.5 s
        # alone (up to 9 s in the suite), mostly the interpreter tearing Airflow's heap down
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()
