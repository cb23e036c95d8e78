"""Benchmark: an advisor's snapshot of every sub-account at IBKR's pace (issue 26).

A sandbox with an advisor login of ``N`` sub-accounts (IBKR's global limit, 50 requests/s, and
its per-endpoint table enforced), and the snapshot operator in a process of its own, as a worker
runs it: every sub-account's summary, ledger and position pages, written to JSON and CSV as they
come. Measured:

- the snapshot's time against the time IBKR's pace allows for the requests it made (the bound:
  requests over the global rate, or a paced endpoint's requests over its own rate when that is
  longer), and the 429s the sandbox answered;
- the peak resident memory of the task process (``ru_maxrss``) at 100 and at 1,000 accounts.

Prints a Markdown section for docs/benchmarks.md. Run: ``.venv/bin/python
benchmarks/advisor_snapshot.py [--quick]`` (``--quick``: 100 and 300 accounts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sandbox"))

#: ``make cluster``'s Celery workers.
WORKERS = ("worker-1", "worker-2")
#: IBKR's global limit for OAuth sessions (requests per second).
GLOBAL_RATE = 50.0

#: The task process: the operator exactly as a worker runs it; prints its figures as JSON.
TASK = """
import json, resource, sys, time
from ibkr_provider.operators.portfolio import IbkrPortfolioSnapshotOperator
started = time.monotonic()
result = IbkrPortfolioSnapshotOperator(task_id="snapshot", output_path=sys.argv[1]).execute(
    context={"run_id": "bench"}
)
print(json.dumps({
    "seconds": time.monotonic() - started,
    "accounts": len(result["accounts"]),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


@dataclass(frozen=True)
class Run:
    accounts: int
    seconds: float
    requests: int
    bound_seconds: float
    http_429: int
    peak_rss_mb: float

    @property
    def ratio(self) -> float:
        return self.seconds / self.bound_seconds


def measure_one(count: int, work: Path) -> Run:
    from ibkr_sandbox.process import start_sandbox
    from ibkr_sandbox.seed import ADVISOR_CREDENTIAL

    sandbox = start_sandbox(
        work / f"sandbox-{count}", "--advisor-subaccounts", str(count), "--price-tick-seconds", "0"
    )
    try:
        conn = sandbox.connection_json(credential=ADVISOR_CREDENTIAL, session_cache="memory")
        env = {**os.environ, "AIRFLOW_CONN_IBKR_DEFAULT": conn, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", TASK, str(work / f"out-{count}")],
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(done.stdout[-2000:] + done.stderr[-4000:])
        figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        stats = sandbox.stats()
    finally:
        sandbox.stop()
    paths: dict[str, int] = stats["paths"]
    snapshot_requests = sum(n for path, n in paths.items() if "/portfolio/" in path)
    # the bound: the global rate, or a paced endpoint (1 per 5 s) when it needs longer
    paced = max((n - 1) * 5.0 for path, n in paths.items() if path.endswith("/portfolio/accounts"))
    return Run(
        accounts=int(figures["accounts"]),
        seconds=float(figures["seconds"]),
        requests=snapshot_requests,
        bound_seconds=max(snapshot_requests / GLOBAL_RATE, paced),
        http_429=int(stats.get("http_429", 0)),
        peak_rss_mb=float(figures["peak_rss_mb"]),
    )


def measure(counts: tuple[int, ...] = (100, 1000)) -> list[Run]:
    with tempfile.TemporaryDirectory(prefix="ibkr-bench-advisor-") as tmp:
        return [measure_one(count, Path(tmp)) for count in counts]


def markdown(runs: list[Run]) -> str:
    rows = "\n".join(
        f"| {r.accounts} | {r.requests} | {r.bound_seconds:.1f} | {r.seconds:.1f} | **{r.ratio:.2f}x** | "
        f"{r.http_429} | {r.peak_rss_mb:.0f} |"
        for r in runs
    )
    small, large = runs[0], runs[-1]
    return f"""
## An advisor's snapshot of every sub-account

A sandbox advisor login with N sub-accounts (IBKR's 50 requests/s and per-endpoint table
enforced) and `IbkrPortfolioSnapshotOperator` in a process of its own: every sub-account's
summary, ledger and position pages (sub-accounts listed 100 a page from
`/portfolio/subaccounts2`), written to JSON and CSV as each account comes. Bound: the snapshot's
requests over IBKR's global rate (50/s). Command: `.venv/bin/python benchmarks/advisor_snapshot.py`.

| sub-accounts | requests | bound s | took s | of the bound | 429s | peak RSS MB |
|---|---|---|---|---|---|---|
{rows}

Goal: within 1.15x of the bound with no 429, and memory flat as accounts grow (within 1.5x from
{small.accounts} to {large.accounts} accounts): {large.ratio:.2f}x, {large.http_429} x 429, memory
{large.peak_rss_mb / small.peak_rss_mb:.2f}x.
"""


@dataclass(frozen=True)
class MappedRun:
    accounts: int
    tasks: int
    workers: int
    seconds: float
    requests: int
    http_429: int

    @property
    def bound_seconds(self) -> float:
        return self.requests / GLOBAL_RATE

    @property
    def ratio(self) -> float:
        return self.seconds / self.bound_seconds


def measure_mapped(count: int = 1000, chunk: int = 100) -> MappedRun:
    """The same snapshot as ``count / chunk`` mapped tasks on ``make cluster``'s two Celery
    workers (one IBKR session and one pacing ledger in Redis): from the first task's start to the
    last task's end, against the requests all tasks made."""
    from scripts.local_airflow import free_port
    from tests.support.airflow_api import Api
    from tests.support.scripts import running_script, user_env

    dag_id = "ibkr_advisor_snapshot_mapped"
    with tempfile.TemporaryDirectory(prefix="ibkr-bench-mapped-") as tmp:
        work = Path(tmp) / "cluster"
        env = user_env(
            IBKR_CLUSTER_PORT=str(free_port()),
            IBKR_CLUSTER_DIR=str(work),
            IBKR_CLUSTER_DAGS=str(ROOT / "benchmarks" / "dags"),
            IBKR_CLUSTER_ADVISOR_SUBACCOUNTS=str(count),
        )
        with running_script("cluster.py", env, Path(tmp) / "cluster.out", boot_seconds=720, stop_seconds=90):
            info: dict[str, Any] = json.loads((work / "cluster.json").read_text())
            api = Api(info["url"], info["password"])
            stats_url = f"{info['sandbox_url']}/__sandbox__/stats"
            import requests

            before = requests.get(stats_url, timeout=30).json()
            out = Path(tmp) / "out"
            run_id = api.trigger(dag_id, {"chunk": chunk, "output_dir": str(out)})
            state = api.finish(dag_id, run_id, seconds=1800)
            if state != "success":
                raise RuntimeError(f"{dag_id} ended {state}: see {work / 'logs'}")
            after = requests.get(stats_url, timeout=30).json()
            tasks = [t for t in api.task_instances(dag_id, run_id) if t["task_id"] == "snapshot"]
            # both workers run on this one machine (one hostname): each Celery worker's own log
            # says which tasks it received
            logs = [
                (work / "logs" / f"{name}.log").read_text(errors="replace")
                for name in ("worker-1", "worker-2")
            ]
            workers = sum(1 for log in logs if f"dag_id='{dag_id}'" in log or dag_id in log)
        written = sum(
            len(json.loads(f.read_text())["accounts"]) for f in out.glob("*/portfolio_snapshot_*.json")
        )
        if written != count:
            raise RuntimeError(f"the files hold {written} accounts, not {count}")
    import datetime as dt

    starts = [dt.datetime.fromisoformat(t["start_date"]) for t in tasks]
    ends = [dt.datetime.fromisoformat(t["end_date"]) for t in tasks]
    requests_made = sum(
        n - before["paths"].get(path, 0) for path, n in after["paths"].items() if "/portfolio/" in path
    )
    return MappedRun(
        accounts=count,
        tasks=len(tasks),
        workers=workers,
        seconds=(max(ends) - min(starts)).total_seconds(),
        requests=requests_made,
        http_429=int(after.get("http_429", 0)) - int(before.get("http_429", 0)),
    )


def markdown_mapped(run: MappedRun) -> str:
    return f"""
The same {run.accounts} sub-accounts as {run.tasks} mapped tasks of 100 on `make cluster`
(CeleryExecutor, tasks ran on {run.workers} workers, one IBKR session and one pacing ledger in
Redis; `.venv/bin/python benchmarks/advisor_snapshot.py --cluster`): {run.requests} requests
(each task also reads the sub-account list), {run.seconds:.1f} s from the first task's start to
the last one's end against a bound of {run.bound_seconds:.1f} s: **{run.ratio:.2f}x**, {run.http_429} x 429.
"""


if __name__ == "__main__":
    if "--cluster" in sys.argv:
        sys.stdout.write(markdown_mapped(measure_mapped()))
    else:
        quick = "--quick" in sys.argv
        result = measure((100, 300) if quick else (100, 1000))
        sys.stdout.write(markdown(result))
