"""Self-service OAuth 1.0a across OS processes: eight processes, released together, share one
live session token, and their signed timestamps never go backwards, even with a sandbox that
forgives no second. (Mapped tasks, the snapshot and the masking scan in a real executor:
test_local_executor.py.)"""

from __future__ import annotations

from pathlib import Path

from ibkr_sandbox.process import RunningSandbox

from tests.support.processes import cache_env, run_workers
from tests.support.sessions import assert_one_live_session_token, assert_single_flight

REQUESTS = 15


def test_eight_processes_share_one_live_session_token_with_timestamps_in_order(
    fresh_oauth1_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Tolerance 0: a request signed with an earlier timestamp than one the sandbox already saw is
    refused (401). A timestamp is the second its request goes out in, never before its slot in the
    shared pacer, whose slots only grow across processes."""
    env = {
        "AIRFLOW_CONN_IBKR_DEFAULT": fresh_oauth1_sandbox.connection_json(),
        **cache_env(tmp_path / "cache"),
    }
    fresh_oauth1_sandbox.configure(oauth1_timestamp_tolerance=0)
    fresh_oauth1_sandbox.inject_fault("/v1/api/oauth/live_session_token", "delay", delay=1.0)
    reports = run_workers(8, "requests", env, n=REQUESTS)
    assert len({r["pid"] for r in reports}) == 8
    assert all(r["requests"] == REQUESTS and "error" not in r for r in reports), reports
    assert_single_flight(reports)  # they really overlapped: all but one waited for the opener
    stats = fresh_oauth1_sandbox.stats()
    assert_one_live_session_token(stats)
    assert stats["paths"]["GET /v1/api/iserver/accounts"] >= 8 * REQUESTS
