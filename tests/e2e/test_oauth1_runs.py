"""Self-service OAuth 1.0a in real multi-process Airflow: eight OS processes and eight mapped
tasks share one live session token; the snapshot DAG runs; no prepend, token or signature
reaches a task log. (The rebalance DAG's OAuth 1.0a signing is the same client path the snapshot
takes; its own runs are in test_dags.py and test_airflow_runs.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ibkr_sandbox.process import RunningSandbox

from tests.support.airflow_cli import REPO_ROOT, run_airflow
from tests.support.airflow_cluster import airflow_cluster
from tests.support.processes import cache_env, run_workers

ALL_ACCOUNTS = ["DU1234567", "DU2345678", "U3456789"]


def _assert_one_lst(stats: dict[str, Any]) -> None:
    shown = json.dumps(stats, sort_keys=True)
    assert (stats["lst_issued"], stats["ssodh_inits"]) == (1, 1), shown
    assert stats.get("rejected_signatures", 0) == 0 and stats["http_401"] == 0 and stats["http_429"] == 0, (
        shown
    )
    assert stats.get("http_410", 0) == 0 and stats.get("competing_takeovers", 0) == 0, shown


def test_eight_processes_share_one_live_session_token(
    fresh_oauth1_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    env = {
        "AIRFLOW_CONN_IBKR_DEFAULT": fresh_oauth1_sandbox.connection_json(),
        **cache_env(tmp_path / "cache"),
    }
    fresh_oauth1_sandbox.inject_fault("/v1/api/oauth/live_session_token", "delay", delay=1.0)
    reports = run_workers(8, "accounts", env)
    assert all(r["accounts"] == ALL_ACCOUNTS for r in reports) and len({r["pid"] for r in reports}) == 8
    assert sum(r["session"]["opened"] for r in reports) == 1
    _assert_one_lst(fresh_oauth1_sandbox.stats())


def test_oauth1a_dags_under_the_executor(
    fresh_oauth1_sandbox: RunningSandbox, tmp_path: Path, fresh_airflow_home: Path
) -> None:
    """Eight mapped tasks, then the portfolio snapshot (every position), all in separate task
    processes: one live session token for everything; then the probe that logs every secret,
    and a scan of every task log."""
    dags = tmp_path / "dags"
    dags.mkdir()
    for source in (
        REPO_ROOT / "dags" / "ibkr_portfolio_snapshot.py",
        REPO_ROOT / "tests" / "support" / "dags" / "ibkr_parallel_accounts.py",
        REPO_ROOT / "tests" / "support" / "dags" / "ibkr_mask_probe.py",
    ):
        shutil.copy(source, dags / source.name)
    out = tmp_path / "out"
    out.mkdir()
    home = fresh_airflow_home
    with airflow_cluster(home, dags, parallelism=8) as env:
        env = {
            **env,
            "AIRFLOW_CONN_IBKR_DEFAULT": fresh_oauth1_sandbox.connection_json(),
            "IBKR_PARALLEL_OUT": str(out),
            "IBKR_MASK_PROBE_OUT": str(tmp_path / "secrets.json"),
        }
        runs = {
            "ibkr_parallel_accounts": [],
            "ibkr_portfolio_snapshot": ["-c", json.dumps({"output_dir": str(tmp_path / "snapshot")})],
            "ibkr_mask_probe": [],
        }
        for dag_id, conf in runs.items():
            result = run_airflow(["dags", "test", dag_id, *conf, "--use-executor"], env, timeout=400)
            assert result.returncode == 0, dag_id + (result.stdout + result.stderr)[-4000:]
            if dag_id == "ibkr_parallel_accounts":
                reports = [json.loads(p.read_text()) for p in out.glob("*.json")]
                assert len({r["pid"] for r in reports}) == 8 and all(
                    r["accounts"] == ALL_ACCOUNTS for r in reports
                )
    stats = fresh_oauth1_sandbox.stats()
    _assert_one_lst(stats)  # one token for the three DAG runs and every task process
    snapshot = json.loads(next((tmp_path / "snapshot").glob("portfolio_snapshot_*.json")).read_text())
    by_id = {a["account"]["accountId"]: a for a in snapshot["accounts"]}
    assert len(by_id["DU1234567"]["positions"]) == 273

    runtime = json.loads((tmp_path / "secrets.json").read_text())
    secrets = {"live session token": runtime["bearer"], "prepend": runtime["prepend"]}
    secrets.update({"access token": runtime["access_token"], "tickle session": runtime["tickle_session"]})
    assert runtime["lst_request_signatures"]
    secrets.update({f"LST request signature {n}": s for n, s in enumerate(runtime["lst_request_signatures"])})
    assert all(len(value) > 5 for value in secrets.values())
    logs = "\n".join(p.read_text() for p in (home / "logs").rglob("*.log"))
    assert "leak via logging: prepend=***" in logs and "leak via logging: bearer=***" in logs
    for name, value in secrets.items():
        assert value not in logs, f"{name} leaked into a task log"
    assert "oauth_signature" not in logs
