"""Secrets never reach a task log: a real multi-process Airflow run of a DAG that deliberately
logs and prints the bearer, the access token and the private key shows only ***.

Scope: the task log Airflow persists and serves in the UI. Airflow 3.3's LocalExecutor also
copies task output to the executor's own stdout (``subprocess_logs_to_stdout=True``); that copy
does not apply masks registered at runtime, which no provider can change (see README, Secrets).
"""

from __future__ import annotations

import json
from pathlib import Path

from ibkr_sandbox.process import RunningSandbox

from tests.support.airflow_cli import REPO_ROOT, run_airflow
from tests.support.airflow_cluster import airflow_cluster


def test_task_logs_show_no_ibkr_secret(
    tmp_path: Path, fresh_sandbox: RunningSandbox, fresh_airflow_home: Path
) -> None:
    home = fresh_airflow_home
    out = tmp_path / "secrets.json"
    with airflow_cluster(home, REPO_ROOT / "tests" / "support" / "dags") as env:
        env = {
            **env,
            "AIRFLOW_CONN_IBKR_DEFAULT": fresh_sandbox.connection_json(),
            "IBKR_MASK_PROBE_OUT": str(out),
        }
        result = run_airflow(["dags", "test", "ibkr_mask_probe", "--use-executor"], env, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    runtime = json.loads(out.read_text())
    assert len(runtime["signed_jwts"]) == 2  # the client assertion and the SSO-session JWT
    key_pem = (fresh_sandbox.state_dir / "client_private_key.pem").read_text()
    body_lines = [line for line in key_pem.splitlines() if "-----" not in line]
    assert [line for line in runtime["key_lines"] if "-----" not in line] == body_lines
    secrets = {name: runtime[name] for name in ("bearer", "access_token", "tickle_session")}
    secrets.update({f"signed JWT {n}": jwt for n, jwt in enumerate(runtime["signed_jwts"])})
    secrets.update({f"private key line {n}": line for n, line in enumerate(body_lines)})  # every line
    assert all(len(value) > 5 for value in secrets.values())  # Airflow masks values over 5 characters

    task_logs = [p for p in (home / "logs").rglob("*.log") if "task_id=leak_everything" in str(p)]
    assert task_logs, "the run wrote no task log"
    text = "\n".join(p.read_text() for p in task_logs)
    # The probe really logged: the lines are there, with the values masked.
    for probe in ("leak via logging: bearer=***", "leak via print: access_token=***", "tickle_session=***"):
        assert probe in text, probe
    assert "leak via logging: jwt 1=" in text and f"key_line {len(runtime['key_lines']) - 2}=***" in text
    assert "leak of the whole key" in text
    for name, value in secrets.items():
        assert value not in text, f"{name} leaked into the task log"
