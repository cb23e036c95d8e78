"""Self-service OAuth 1.0a across OS processes: eight processes, released together, share one
live session token. (Mapped tasks, the snapshot and the masking scan in a real executor:
test_local_executor.py.)"""

from __future__ import annotations

from pathlib import Path

from ibkr_sandbox.process import RunningSandbox

from tests.support.processes import cache_env, run_workers
from tests.support.sessions import ALL_ACCOUNTS, assert_one_live_session_token


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
    assert_one_live_session_token(fresh_oauth1_sandbox.stats())
