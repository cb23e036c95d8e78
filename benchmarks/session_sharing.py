"""Benchmark: what one shared IBKR session saves, measured by the sandbox in one run.

Scenarios (each against a fresh sandbox state, all in one run of this script):

1. DAG run: ``ibkr_parallel_accounts`` (8 mapped tasks) under ``airflow dags test
   --use-executor`` with LocalExecutor, once with this provider's shared file cache and once
   with a naive per-task login (``session_cache=memory``: every task process logs in itself).
   Reported: auth round trips (token + SSO session + ssodh/init requests), competing
   takeovers, 401s and failed tasks, per DAG run.
2. Pacing: 8 processes issue N requests each against a sandbox limit of 10 requests/s, with
   the shared pacer, and with per-process pacing only (the naive case). Reported: achieved
   request rate versus the limit, 429 answers, failed processes, wall time.

Usage (from the repository root; `make bench` runs it and rewrites docs/benchmarks.md):

    .venv/bin/python benchmarks/session_sharing.py [--requests 100] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from ibkr_sandbox.process import RunningSandbox, start_sandbox  # noqa: E402

from ibkr_provider.client.pacing import SAFETY_MARGIN  # noqa: E402
from tests.support.airflow_cli import run_airflow  # noqa: E402
from tests.support.airflow_cluster import airflow_cluster  # noqa: E402
from tests.support.processes import cache_env, run_workers  # noqa: E402


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


def pacing_run(sandbox: RunningSandbox, work: Path, *, shared: bool, requests_each: int) -> dict[str, Any]:
    sandbox.reset()
    sandbox.configure(rate_limit=10.0, penalty_seconds=15.0)
    cache = work / ("pace-shared" if shared else "pace-naive")
    extra: dict[str, Any] = {"rate_limit": 10, "max_retry_seconds": 20}
    if not shared:
        extra["session_cache"] = "memory"
    env = {"AIRFLOW_CONN_IBKR_DEFAULT": sandbox.connection_json(**extra), **cache_env(cache)}
    results = run_workers(8, "requests", env, n=requests_each, timeout=900, allow_errors=True)
    stats = sandbox.stats()
    api = sum(v for k, v in stats["paths"].items() if " /v1/api/" in k)
    answered = api - stats["http_429"]
    elapsed = max(r["finished"] for r in results) - min(r["started"] for r in results)
    return {
        "mode": "shared pacer (file cache)" if shared else "per-process pacing (naive)",
        "processes_failed": sum(1 for r in results if "error" in r),
        "requests_done": sum(int(r.get("requests", 0)) for r in results),
        "api_requests_seen": api,
        "http_429": stats["http_429"],
        "penalties": stats.get("penalties", 0),
        "achieved_rate": round(answered / elapsed, 2) if elapsed else 0.0,
        "limit": 10.0,
        "seconds": round(elapsed, 1),
        "floor_seconds": round((answered - 1) / 10.0, 1),
    }


def row_line(cells: list[Any]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def markdown(dag: list[dict[str, Any]], pace: list[dict[str, Any]], command: str, requests_each: int) -> str:
    shared_dag, naive_dag = dag
    shared_pace, naive_pace = pace
    ratio = naive_dag["auth_round_trips"] / max(1, shared_dag["auth_round_trips"])
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, "
        f"Python {platform.python_version()}, a shared 2-core machine: quote ratios from one run).",
        "",
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
        "## Pacing: 8 processes against a 10 requests/s limit",
        "",
        f"Each of 8 processes sends {requests_each} `GET /iserver/accounts`; the sandbox enforces "
        "10 requests/s per username with a penalty box (15 s here; IBKR's is 10-15 minutes). "
        "Achieved rate = answered requests / wall time; floor = the least time the limit allows "
        "for those requests.",
        "",
        "| mode | achieved req/s | limit | 429s | penalties | failed processes | requests done | seconds "
        "| floor seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in pace:
        lines.append(
            row_line(
                [
                    row["mode"],
                    row["achieved_rate"],
                    f"{row['limit']:g}",
                    row["http_429"],
                    row["penalties"],
                    row["processes_failed"],
                    row["requests_done"],
                    row["seconds"],
                    row["floor_seconds"],
                ]
            )
        )
    lines += [
        "",
        f"Shared pacing finished in {shared_pace['seconds']} s against a floor of "
        f"{shared_pace['floor_seconds']} s "
        f"({shared_pace['seconds'] / max(shared_pace['floor_seconds'], 0.1):.2f}x) with "
        f"{shared_pace['http_429']} x 429; per-process pacing drew {naive_pace['http_429']} x 429 and "
        f"{naive_pace['penalties']} penalty-box entries. The client spaces requests "
        f"{SAFETY_MARGIN:.2f}x wider than the limit on purpose (`SAFETY_MARGIN`: a request may arrive "
        f"{(SAFETY_MARGIN - 1) * 1000:.0f} ms late without sharing a one-second window), "
        "so that is the pace it aims for.",
        "",
        "Raw figures (JSON):",
        "",
        "```json",
        json.dumps({"dag_runs": dag, "pacing": pace}, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=100, help="requests per process in the pacing scenario"
    )
    parser.add_argument("--write", type=Path, help="write the markdown report here")
    args = parser.parse_args()
    command = "make bench" if args.write else "python benchmarks/session_sharing.py"
    with tempfile.TemporaryDirectory(prefix="ibkr-bench-") as tmp:
        work = Path(tmp)
        # Worker processes read Airflow config: give them their own home and a real Fernet key.
        os.environ.update(
            {
                "AIRFLOW_HOME": str(work / "airflow-home"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            }
        )
        sandbox = start_sandbox(work / "sandbox")
        try:
            dag = [dag_run(sandbox, work, shared=True), dag_run(sandbox, work, shared=False)]
            pace = [
                pacing_run(sandbox, work, shared=True, requests_each=args.requests),
                pacing_run(sandbox, work, shared=False, requests_each=args.requests),
            ]
        finally:
            sandbox.stop()
    report = markdown(dag, pace, command, args.requests)
    sys.stdout.write(report)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
