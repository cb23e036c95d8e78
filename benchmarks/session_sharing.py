"""Benchmark: what one shared IBKR session saves, measured by the sandbox in one run.

Scenarios (each against a fresh sandbox state, all in one run of this script):

1. DAG run: ``ibkr_parallel_accounts`` (8 mapped tasks) under ``airflow dags test
   --use-executor`` with LocalExecutor, once with this provider's shared file cache and once
   with a naive per-task login (``session_cache=memory``: every task process logs in itself).
   Reported: auth round trips (token + SSO session + ssodh/init requests), competing
   takeovers, 401s and failed tasks, per DAG run.
2. Pacing: 8 processes issue N requests each (15 and 100) against a sandbox limit of 9
   requests/s, with the shared pacer on the file and on the Redis cache, and with per-process
   pacing only (the naive case). Reported: wall time against the limit's floor, 429 answers,
   penalty-box entries, failed processes.

Usage: `make bench` (benchmarks/run_all.py) runs it with the others and rewrites
docs/benchmarks.md; alone: `.venv/bin/python benchmarks/session_sharing.py`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from ibkr_sandbox.process import RunningSandbox, start_sandbox  # noqa: E402

from scripts.local_airflow import run_airflow  # noqa: E402
from tests.support.airflow_cluster import airflow_cluster  # noqa: E402
from tests.support.processes import cache_env, run_workers  # noqa: E402
from tests.support.redis_server import redis_server  # noqa: E402


def auth_round_trips(stats: dict[str, Any]) -> int:
    return int(stats["token_requests"] + stats["sso_sessions"] + stats["ssodh_inits"])


def dag_run(sandbox: RunningSandbox, work: Path, *, shared: bool) -> dict[str, Any]:
    sandbox.reset()
    home = work / ("home-shared" if shared else "home-naive")
    home.mkdir()
    out = work / ("out-shared" if shared else "out-naive")
    out.mkdir()
    conn = sandbox.connection_json() if shared else sandbox.connection_json(session_cache="memory")
    started = time.monotonic()
    with airflow_cluster(home, ROOT / "tests" / "support" / "dags", parallelism=8) as env:
        env = {**env, "AIRFLOW_CONN_IBKR_DEFAULT": conn, "IBKR_PARALLEL_OUT": str(out)}
        result = run_airflow(["dags", "test", "ibkr_parallel_accounts", "--use-executor"], env, timeout=600)
    elapsed = time.monotonic() - started
    stats = sandbox.stats()
    return {
        "mode": "shared session (file cache)" if shared else "naive per-task login",
        "tasks_ok": len(list(out.glob("*.json"))),
        "dag_run_ok": result.returncode == 0,
        "auth_round_trips": auth_round_trips(stats),
        "tokens": stats["tokens_issued"],
        "sso_sessions": stats["sso_sessions"],
        "ssodh_inits": stats["ssodh_inits"],
        "competing_takeovers": stats.get("competing_takeovers", 0),
        "http_401": stats["http_401"],
        "seconds": round(elapsed, 1),
    }


RATE = 9.0


def pacing_run(
    sandbox: RunningSandbox, work: Path, *, store: str, requests_each: int, redis_url: str | None = None
) -> dict[str, Any]:
    """8 processes x ``requests_each`` requests at 9/s; ``store`` is file, redis or naive (each
    process paces alone: the memory cache)."""
    sandbox.reset()
    sandbox.configure(rate_limit=RATE, penalty_seconds=15.0)
    extra: dict[str, Any] = {"rate_limit": RATE, "max_retry_seconds": 20}
    if store == "naive":
        extra["session_cache"] = "memory"
    elif store == "redis":
        extra["session_cache"] = redis_url
    cache = work / f"pace-{store}-{requests_each}"
    env = {"AIRFLOW_CONN_IBKR_DEFAULT": sandbox.connection_json(**extra), **cache_env(cache)}
    results = run_workers(8, "requests", env, n=requests_each, timeout=900, allow_errors=True)
    stats = sandbox.stats()
    api = sum(v for k, v in stats["paths"].items() if " /v1/api/" in k)
    answered = api - stats["http_429"]
    elapsed = max(r["finished"] for r in results) - min(r["started"] for r in results)
    floor = (answered - 1) / RATE
    return {
        "mode": {"file": "shared pacer, file cache", "redis": "shared pacer, Redis cache"}.get(
            store, "per-process pacing (naive)"
        ),
        "requests_each": requests_each,
        "processes_failed": sum(1 for r in results if "error" in r),
        "requests_done": sum(int(r.get("requests", 0)) for r in results),
        "http_429": stats["http_429"],
        "penalties": stats.get("penalties", 0),
        "seconds": round(elapsed, 2),
        "floor_seconds": round(floor, 2),
        "ratio": round(elapsed / floor, 3) if floor else 0.0,
    }


def row_line(cells: list[Any]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def markdown(dag: list[dict[str, Any]], pace: list[dict[str, Any]]) -> str:
    shared_dag, naive_dag = dag
    ratio = naive_dag["auth_round_trips"] / max(1, shared_dag["auth_round_trips"])
    lines = [
        "## Auth round trips per DAG run",
        "",
        "`ibkr_parallel_accounts`: 8 mapped tasks, each in its own process (LocalExecutor via "
        "`airflow dags test --use-executor`), each building `IbkrHook` and listing accounts. Counted by "
        "the sandbox: auth round trips = token requests + SSO sessions + `ssodh/init` calls.",
        "",
        "| mode | tasks ok | auth round trips | tokens | SSO sessions | ssodh/init | competing takeovers "
        "| 401s | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in dag:
        lines.append(
            row_line(
                [
                    row["mode"],
                    f"{row['tasks_ok']}/8",
                    row["auth_round_trips"],
                    row["tokens"],
                    row["sso_sessions"],
                    row["ssodh_inits"],
                    row["competing_takeovers"],
                    row["http_401"],
                    row["seconds"],
                ]
            )
        )
    lines += [
        "",
        f"The naive per-task login made {ratio:.1f}x the auth round trips of the shared session in the same "
        "run, and every extra `ssodh/init` takes the brokerage session from the task before it (IBKR allows "
        "one per username).",
        "",
        "## Pacing: 8 processes against a 9 requests/s limit",
        "",
        "Each of 8 processes (released together by a start barrier) sends N `GET /iserver/accounts`; "
        "the sandbox enforces 9 requests/s per username in a strict one-second window with a penalty box "
        "(15 s here; IBKR's is 10-15 minutes). Floor = the least time the limit allows for the answered "
        "requests; ratio = wall time / floor. The client spaces slots 10 % wider than the limit on purpose "
        "(a request may arrive 100 ms late without sharing a window), so 1.10 is the designed pace. "
        "Goals: 8 x 15 within 1.15x, 8 x 100 within 1.12x, 0 x 429, file and Redis alike.",
        "",
        "| mode | N per process | seconds | floor seconds | ratio | 429s | penalties | failed processes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in pace:
        lines.append(
            row_line(
                [
                    row["mode"],
                    row["requests_each"],
                    row["seconds"],
                    row["floor_seconds"],
                    f"**{row['ratio']:.3f}**",
                    row["http_429"],
                    row["penalties"],
                    row["processes_failed"],
                ]
            )
        )
    lines += [
        "",
        "Raw figures (JSON):",
        "",
        "```json",
        json.dumps({"dag_runs": dag, "pacing": pace}, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def run(work: Path) -> str:
    """Every scenario against one sandbox; the markdown sections."""
    os.environ.update(
        {
            "AIRFLOW_HOME": str(work / "airflow-home"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        }
    )
    sandbox = start_sandbox(work / "sandbox", "--price-tick-seconds", "0")
    try:
        dag = [dag_run(sandbox, work, shared=True), dag_run(sandbox, work, shared=False)]
        with redis_server(work / "redis") as url:
            pace = [
                pacing_run(sandbox, work, store=store, requests_each=n, redis_url=url)
                for n in (15, 100)
                for store in ("file", "redis")
            ]
        pace.append(pacing_run(sandbox, work, store="naive", requests_each=15))
    finally:
        sandbox.stop()
    return markdown(dag, pace)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="ibkr-bench-") as tmp:
        sys.stdout.write(run(Path(tmp)))
