"""`make up` (scripts/up.py): the sandbox and `airflow standalone` come up with the connections
preset, the UI's Test button path and a triggered DAG run work, and SIGTERM stops everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

from tests.support.airflow_cli import REPO_ROOT
from tests.support.ports import free_port


def test_make_up_serves_the_ui_with_working_connections(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "airflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update({"IBKR_UP_PORT": str(port), "IBKR_UP_HOME": str(home)})
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115 - closed below
    up = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "scripts" / "up.py")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while "Ctrl-C stops" not in (tmp_path / "up.log").read_text():
            assert up.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "make up did not come up in 240 s"
            time.sleep(1)
        printed = (tmp_path / "up.log").read_text()
        assert f"Airflow UI:    {url}" in printed
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        assert f"Password:      {password}" in printed
        token = requests.post(
            f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=30
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}

        stored = requests.get(f"{url}/api/v2/connections/ibkr_default", headers=auth, timeout=30).json()
        assert json.loads(stored["extra"])["private_key"] == "***"  # the UI never shows the key
        conn = json.loads((home.parent / ".sandbox" / "airflow_conn_ibkr_default.json").read_text())
        body = {**conn, "connection_id": "ibkr_default", "extra": json.dumps(conn["extra"])}
        tested = requests.post(f"{url}/api/v2/connections/test", json=body, headers=auth, timeout=120).json()
        assert tested["status"] is True and "DU1234567" in tested["message"]

        dags = requests.get(f"{url}/api/v2/dags", headers=auth, timeout=30).json()
        assert {d["dag_id"] for d in dags["dags"]} >= {"ibkr_portfolio_snapshot", "ibkr_risk_monitor"}
        requests.patch(
            f"{url}/api/v2/dags/ibkr_risk_monitor", json={"is_paused": False}, headers=auth, timeout=30
        )
        run = requests.post(
            f"{url}/api/v2/dags/ibkr_risk_monitor/dagRuns",
            json={"logical_date": None},
            headers=auth,
            timeout=30,
        ).json()
        state = "queued"
        deadline = time.monotonic() + 180
        while state not in ("success", "failed") and time.monotonic() < deadline:
            time.sleep(2)
            state = requests.get(
                f"{url}/api/v2/dags/ibkr_risk_monitor/dagRuns/{run['dag_run_id']}", headers=auth, timeout=30
            ).json()["state"]
        assert state == "success"
    finally:
        children = psutil.Process(up.pid).children(recursive=True) if up.poll() is None else []
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
        log.close()
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"still running after SIGTERM: {[p.pid for p in alive]}"
