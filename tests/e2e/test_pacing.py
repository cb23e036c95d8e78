"""Eight processes share one username's pacing budget: never faster than the limit, no slot lost
(requests claim slots in order, so the run takes the limit's time plus the 10 % spacing margin),
and no 429 from the sandbox's strict one-second window, with the file and the Redis store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ibkr_sandbox.process import RunningSandbox

from tests.support.processes import cache_env, run_workers
from tests.support.redis_server import redis_server

RATE = 9.0
PROCESSES, REQUESTS = 8, 15


def _run(sandbox: RunningSandbox, env: dict[str, str]) -> tuple[float, float]:
    sandbox.configure(rate_limit=RATE, penalty_seconds=60.0)
    reports = run_workers(PROCESSES, "requests", env, n=REQUESTS, timeout=300, allow_errors=True)
    # First, and whole (pytest shortens a dict): a 429 shows the window that broke and the stalls.
    stats = sandbox.stats()
    shown = json.dumps({"stats": stats, "failed": [r for r in reports if r["exit_code"] != 0]})
    assert stats["http_429"] == 0 and stats.get("penalties", 0) == 0, shown
    assert all(r["exit_code"] == 0 and r["requests"] == REQUESTS for r in reports), reports
    api_requests = sum(v for k, v in stats["paths"].items() if " /v1/api/" in k)
    elapsed = max(r["finished"] for r in reports) - min(r["started"] for r in reports)
    return elapsed, (api_requests - 1) / RATE  # the fastest the limit allows


@pytest.mark.parametrize("store", ["file", "redis"])
def test_eight_processes_pace_together_without_losing_slots(
    store: str, fresh_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    if store == "file":
        env = {
            "AIRFLOW_CONN_IBKR_DEFAULT": fresh_sandbox.connection_json(rate_limit=RATE),
            **cache_env(tmp_path),
        }
        elapsed, floor = _run(fresh_sandbox, env)
    else:
        with redis_server(tmp_path / "redis") as url:
            conn = fresh_sandbox.connection_json(rate_limit=RATE, session_cache=url)
            elapsed, floor = _run(fresh_sandbox, {"AIRFLOW_CONN_IBKR_DEFAULT": conn})
    # Never faster than the limit; slots handed out in order finish near the designed pace
    # (1.10x). Waking to race for slots instead took 1.65x (docs/benchmarks.md).
    assert floor <= elapsed <= floor * 1.25, (elapsed, floor)
