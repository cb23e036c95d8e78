"""The chaos run (issue 26): the example DAGs on `make cluster` while everything they stand on fails.

``make chaos`` (or ``.venv/bin/python benchmarks/chaos.py [--short]``) starts the Celery cluster
(PostgreSQL, Redis, two Celery workers, the triggerer, the sandbox; scripts/cluster.py with
``IBKR_CLUSTER_RESTART=always``, as docker-compose's ``restart: always``) and triggers the
example DAGs, unchanged, from this repository's ``dags/``: snapshots of every account,
rebalances of the paper account DU2345678 that place real orders (market and limit, alternating
between two target sets so every run trades, approved automatically as paper) and wait for
their fills with deferrable sensors, and Flex report exports. Only their retry delay is shortened
to 5 s (``benchmarks/chaos_policy``: an Airflow cluster policy).

Meanwhile it injects, at times drawn from a seed (printed; ``CHAOS_SEED`` repeats a run):
Redis killed and started empty (the shared IBKR session, the pacing ledger and the order locks
gone), PostgreSQL killed and started again, a Celery worker SIGKILLed while IBKR holds the answer
to its order placement (and one more at a random time), the sandbox answering 503 and dropping
connections in bursts, IBKR ending every session, and the sandbox restarted (``--persist``: its
orders and positions survive, as IBKR's do).

At the end it checks from the outside (benchmarks/chaos_checks.py) and prints one line::

    RESULT runs=42 succeeded=.. failed_named=.. duplicates=0 truncated=0 logins=.. http_429=0 seed=..

``--short``: one run of each DAG within a minute, each fault once; ``make test`` runs it on the
cluster of tests/e2e/test_celery_cluster.py (``run_on``). The full run: 42 runs triggered over 10 minutes.
Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for extra in (ROOT, ROOT / "sandbox", ROOT / "scripts"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import requests  # noqa: E402

from benchmarks.chaos_faults import Faults  # noqa: E402

PAPER = "DU2345678"
#: DU2345678's seeded weights are MSFT 0.217 and VTI 0.403 of about 257k: moving 3 % of net
#: liquidation between them each run makes every rebalance trade (a buy and a sell of about 7.7k,
#: net buys about nil, so a run never asks for more cash than the account has).
TARGETS = ({"MSFT": 0.25, "VTI": 0.37}, {"MSFT": 0.19, "VTI": 0.43})
#: In turn, the rebalance first (the short run's worker kill waits for its placement).
DAGS = ("ibkr_rebalance", "ibkr_portfolio_snapshot", "ibkr_flex_report")


#: What `make cluster` needs for a chaos run: a process that dies is started again (compose's
#: `restart: always`), every task retries after 5 s (an Airflow cluster policy), and the
#: rebalance's fill waits poll every 2 s.
CLUSTER_ENV = {
    "IBKR_CLUSTER_RESTART": "always",
    "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT / "benchmarks" / "chaos_policy"), os.environ.get("PYTHONPATH")])
    ),
    "IBKR_REBALANCE_FILL_POLL_SECONDS": "2",
}


@dataclass(frozen=True)
class Plan:
    """How many runs over how many seconds, and how often each fault strikes."""

    seconds: float
    runs: int
    redis: int
    postgres: int
    worker_kills: int  # the first while it holds a placement
    bursts: int
    expiries: int
    sandbox_restarts: int
    #: When the kill during a placement is armed (seconds into the run; None: drawn like the
    #: others). It strikes at the next placement after that.
    placement_kill_at: float | None = None

    @property
    def outages(self) -> int:
        """Times the shared session is lost: the first login, then each Redis restart (its
        record gone), each expiry and each sandbox restart (IBKR ended it)."""
        return 1 + self.redis + self.expiries + self.sandbox_restarts


FULL = Plan(600, 42, redis=2, postgres=1, worker_kills=2, bursts=3, expiries=2, sandbox_restarts=1)
SHORT = Plan(
    45,
    3,
    redis=1,
    postgres=1,
    worker_kills=1,
    bursts=1,
    expiries=1,
    sandbox_restarts=1,
    placement_kill_at=0.0,
)


@dataclass
class Run:
    dag_id: str
    run_id: str
    output: Path
    state: str = "queued"
    cause: str | None = None


@dataclass
class Outcome:
    seed: int
    plan: Plan
    runs: list[Run] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """Nothing placed twice, no file cut, no 429, every failed run named, none left running,
        at most one login per outage of the shared session."""
        f = self.figures
        counted = (f["duplicates"], f["truncated"], f["http_429"], f["failed_unnamed"], f["unfinished"])
        return counted == (0, 0, 0, 0, 0) and f["logins"] <= self.plan.outages

    def result_line(self) -> str:
        f = self.figures
        return (
            f"RESULT runs={len(self.runs)} succeeded={f['succeeded']} failed_named={f['failed_named']} "
            f"duplicates={f['duplicates']} truncated={f['truncated']} logins={f['logins']} "
            f"http_429={f['http_429']} seed={self.seed} outages={self.plan.outages} "
            f"failed_unnamed={f['failed_unnamed']} unfinished={f['unfinished']}"
        )


class Patient:
    """Airflow's REST API through PostgreSQL and api-server restarts: each call is retried for
    up to two minutes (the cluster comes back; the run must not stop because it blinked)."""

    def __init__(self, url: str, password: str) -> None:
        self.url, self.password = url, password
        self.headers: dict[str, str] = {}

    def _login(self) -> None:
        answer = requests.post(
            f"{self.url}/auth/token", json={"username": "admin", "password": self.password}, timeout=30
        )
        answer.raise_for_status()
        self.headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        deadline = time.monotonic() + 120
        while True:
            try:
                if not self.headers:
                    self._login()
                answer = requests.request(
                    method, f"{self.url}/api/v2/{path}", headers=self.headers, timeout=30, **kwargs
                )
                if answer.status_code == 401:
                    self.headers = {}
                if answer.status_code < 500 and answer.status_code != 401:
                    answer.raise_for_status()
                    return answer.json()
            except (requests.ConnectionError, requests.Timeout):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Airflow's API did not answer {method} {path} for two minutes")
            time.sleep(1)


def conf_of(dag_id: str, index: int, output: Path) -> dict[str, Any]:
    if dag_id == "ibkr_rebalance":
        return {
            "account_id": PAPER,
            "targets": TARGETS[index % 2],
            "drift_band": 0.01,
            "min_trade": 100,
            "dry_run": False,
            "auto_approve_paper": True,
            "order_type": ("MKT", "LMT")[index % 2],
            "limit_offset": 0.001,
            # The market moves every second here, and a retry through an outage places its order
            # a minute after the plan: a 1 % guard refused such a leg by the market's chance
            # (seed 596194; the short run under make test's load). The guard is proven by
            # tests/integration/test_approval.py; this run is about faults.
            "max_price_drift": 0.05,
            "output_dir": str(output),
        }
    return {"output_dir": str(output)}


def trigger_runs(api: Patient, plan: Plan, out: Path, outcome: Outcome, started: float) -> None:
    """Trigger ``plan.runs`` runs, spread evenly over the first 80 % of the plan's seconds."""
    for i in range(plan.runs):
        due = started + i * plan.seconds * 0.8 / plan.runs
        time.sleep(max(0.0, due - time.monotonic()))
        dag_id = DAGS[i % len(DAGS)]
        output = out / dag_id / f"run-{i:02d}"
        answer = api.call(
            "POST",
            f"dags/{dag_id}/dagRuns",
            json={"logical_date": None, "conf": conf_of(dag_id, i // len(DAGS), output)},
        )
        outcome.runs.append(Run(dag_id, str(answer["dag_run_id"]), output))
        print(f"[{time.monotonic() - started:5.0f} s] triggered {dag_id} {answer['dag_run_id']}", flush=True)


def wait_for_runs(api: Patient, outcome: Outcome, deadline: float) -> None:
    while True:
        for run in outcome.runs:
            if run.state not in ("success", "failed"):
                run.state = str(api.call("GET", f"dags/{run.dag_id}/dagRuns/{run.run_id}")["state"])
        if all(run.state in ("success", "failed") for run in outcome.runs) or time.monotonic() > deadline:
            return
        time.sleep(2)


def task_instances(api: Patient, run: Run) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.call(
        "GET", f"dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances", params={"limit": 200}
    )["task_instances"]
    return found


def judge(
    api: Patient, info: dict[str, Any], work: Path, out: Path, outcome: Outcome, before: dict[str, Any]
) -> None:
    from benchmarks import chaos_checks as checks

    sandbox = info["sandbox_url"]
    stats = requests.get(f"{sandbox}/__sandbox__/stats", timeout=30).json()
    book = requests.get(f"{sandbox}/__sandbox__/book", timeout=30).json()
    sandbox_orders = [
        order
        for order in requests.get(f"{sandbox}/__sandbox__/orders", timeout=30).json()
        if order["order_id"] not in before["orders_before"]  # placed during the run
    ]
    place_tasks: list[tuple[str, int]] = []
    named = unnamed = 0
    for run in outcome.runs:
        tis = task_instances(api, run)
        if run.dag_id == "ibkr_rebalance":
            place_tasks += [(run.run_id, int(t["map_index"])) for t in tis if t["task_id"] == "place_order"]
        if run.state == "failed":
            run.cause = checks.failure_named(work / "task-logs", run.dag_id, run.run_id, tis)
            named, unnamed = (named + 1, unnamed) if run.cause else (named, unnamed + 1)
    orders = checks.check_orders(sandbox_orders, place_tasks)
    for fault in outcome.faults:  # the retry of a task killed holding a placement adopted it
        if "coid" in fault:
            task = f"dags/ibkr_rebalance/dagRuns/{fault['run_id']}/taskInstances/place_order"
            path = f"{task}/xcomEntries/return_value"
            with contextlib.suppress(requests.HTTPError):
                value = api.call("GET", path, params={"map_index": fault["map_index"]})["value"]
                placed = json.loads(value) if isinstance(value, str) else value
                fault["adopted"], fault["lock_wait_seconds"] = (
                    placed.get("adopted"),
                    placed.get("lock_wait_seconds"),
                )
    journal = checks.check_journal(info["database"], orders.filled_coids)
    files = checks.Files()
    checks.check_snapshot_files(out / "ibkr_portfolio_snapshot", book, files)
    checks.check_flex_files(out / "ibkr_flex_report", files)
    files.leftovers = checks.leftover_partials(out)
    outcome.figures = {
        "succeeded": sum(run.state == "success" for run in outcome.runs),
        "failed_named": named,
        "failed_unnamed": unnamed,
        "unfinished": sum(run.state not in ("success", "failed") for run in outcome.runs),
        "duplicates": orders.duplicates + journal.duplicates,
        "orders_placed": orders.placed,
        "unexpected_coids": orders.unexpected,
        "journal_order_rows": journal.order_rows,
        "journal_fill_rows": journal.fill_rows,
        "journal_missing": journal.missing,
        "files_complete": files.complete,
        "truncated": len(files.truncated),
        "truncated_files": files.truncated,
        "leftover_partials": files.leftovers,
        "logins": int(stats["sso_sessions"]) - int(before.get("sso_sessions", 0)),
        "tokens": int(stats["tokens_issued"]) - int(before.get("tokens_issued", 0)),
        "http_429": int(stats["http_429"]) - int(before.get("http_429", 0)),
        "faults_fired": int(stats.get("faults_fired", 0)) - int(before.get("faults_fired", 0)),
        "causes": {run.run_id: run.cause for run in outcome.runs if run.state == "failed"},
    }


def run_on(info: dict[str, Any], work: Path, plan: Plan, seed: int, out: Path) -> Outcome:
    """The chaos run against a running cluster (``cluster.json``'s ``info``, its work directory)."""
    rng = random.Random(seed)
    outcome = Outcome(seed, plan)
    api = Patient(info["url"], info["password"])
    deadline = time.monotonic() + 240
    for dag_id in DAGS:  # parsed before the clock starts
        while True:
            try:
                api.call("GET", f"dags/{dag_id}")
                break
            except requests.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{dag_id} was not parsed in 240 s") from None
                time.sleep(1)
    before = requests.get(f"{info['sandbox_url']}/__sandbox__/stats", timeout=30).json()
    earlier = requests.get(f"{info['sandbox_url']}/__sandbox__/orders", timeout=30).json()
    before["orders_before"] = {order["order_id"] for order in earlier}
    faults = Faults(info, work, api, rng, outcome.faults)
    started = time.monotonic()
    injector = threading.Thread(target=faults.run, args=(plan, started), name="chaos-faults", daemon=True)
    closed = threading.Event()
    market = threading.Thread(target=faults.make_the_market, args=(closed,), name="chaos-market", daemon=True)
    injector.start()
    market.start()
    trigger_runs(api, plan, out, outcome, started)
    injector.join()
    wait_for_runs(api, outcome, deadline=started + plan.seconds + 420)
    closed.set()
    market.join()
    judge(api, info, work, out, outcome, before)
    return outcome


def run_cluster(plan: Plan, seed: int, base: Path) -> Outcome:
    """Start `make cluster` under ``base`` with the example DAGs, run the chaos ``plan`` on it,
    stop it; the outcome's details also go to ``base/chaos-result.json``."""
    from scripts.local_airflow import free_port
    from tests.support.scripts import running_script, user_env

    work, dags, out = base / "cluster", base / "dags", base / "out"
    dags.mkdir(parents=True, exist_ok=True)
    for dag_id in DAGS:
        shutil.copy(ROOT / "dags" / f"{dag_id}.py", dags)
    env = user_env(
        IBKR_CLUSTER_PORT=str(free_port()),
        IBKR_CLUSTER_DIR=str(work),
        IBKR_CLUSTER_DAGS=str(dags),
        **CLUSTER_ENV,
    )
    with running_script("cluster.py", env, base / "cluster.out", boot_seconds=720, stop_seconds=120):
        info: dict[str, Any] = json.loads((work / "cluster.json").read_text())
        outcome = run_on(info, work, plan, seed, out)
    details = {"seed": seed, "plan": plan.__dict__, "faults": outcome.faults, **outcome.figures}
    (base / "chaos-result.json").write_text(json.dumps(details, indent=2))
    for run in outcome.runs:
        print(f"{run.dag_id} {run.run_id}: {run.state}{f' ({run.cause})' if run.cause else ''}")
    print(f"details: {base / 'chaos-result.json'} (cluster logs in {work / 'logs'})")
    print(outcome.result_line(), flush=True)
    return outcome


def main() -> int:
    short = "--short" in sys.argv
    plan = SHORT if short else FULL
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1_000_000))
    print(f"chaos seed={seed} ({'short' if short else 'full'} plan: {plan})", flush=True)
    base = Path(os.environ.get("CHAOS_DIR") or tempfile.mkdtemp(prefix="ibkr-chaos-"))
    outcome = run_cluster(plan, seed, base)
    return 0 if outcome.clean else 1


if __name__ == "__main__":
    sys.exit(main())
