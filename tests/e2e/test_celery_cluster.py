"""`make cluster` (scripts/cluster.py): the provider on Airflow's CeleryExecutor, two worker hosts.

PostgreSQL, Redis, the sandbox, the api-server, scheduler, dag-processor, triggerer and two
Celery workers, each worker with its own AIRFLOW_HOME (so only Redis is shared). Proven here:
sixteen mapped tasks ran on both workers through one IBKR login (1 token, 1 SSO session, 1
brokerage init, no 429, no competing login); a deferrable order wait was deferred (its worker
slot freed) and finished in the triggerer; a worker SIGKILLed while IBKR held the answer to its
order placement (after a person approved it) is replaced by a retry on the other worker that
adopts the order (one order at the sandbox, one row in the PostgreSQL trade journal) without
waiting longer than the lock's lease. SIGTERM then stops everything.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from ibkr_provider.client.session.stores.redis_store import REDIS_LOCK_TTL_SECONDS
from scripts.local_airflow import free_port
from tests.support.airflow_api import Api
from tests.support.airflow_cli import dag_folder
from tests.support.approval_ui import wait_until_parked
from tests.support.scripts import running_script, user_env

pytestmark = pytest.mark.xdist_group("cluster")

VTI = 12340038  # the instrument ibkr_order_and_wait buys with a limit of 280
MSFT = 272093  # DU2345678 holds 129: a fall to 380 is a day's loss of about 4,400 there


def _sandbox_stats(sandbox_url: str) -> dict[str, Any]:
    stats: dict[str, Any] = requests.get(f"{sandbox_url}/__sandbox__/stats", timeout=30).json()
    return stats


def _one_login(stats: dict[str, Any]) -> None:
    assert stats["token_requests"] == 1 and stats["sso_sessions"] == 1, stats
    assert stats["ssodh_inits"] == 1 and stats.get("competing_takeovers", 0) == 0, stats
    assert stats["http_429"] == 0, stats


def _seconds(ti: dict[str, Any]) -> float:
    start, end = (datetime.fromisoformat(ti[k].replace("Z", "+00:00")) for k in ("start_date", "end_date"))
    return (end - start).total_seconds()


def _worker_running(pid: int, workers: dict[str, int]) -> str:
    """Which worker's process tree holds ``pid``."""
    process: psutil.Process | None = psutil.Process(pid)
    while process is not None:
        for name, root in workers.items():
            if process.pid == root:
                return name
        process = process.parent()
    raise AssertionError(f"pid {pid} belongs to no worker")


def _journal_rows(database: str, run_id: str) -> list[tuple[str, str | None, str | None]]:
    """(kind, actor, cOID) of one run's trade journal rows, from the cluster's PostgreSQL."""
    import psycopg2

    url = database.replace("postgresql+psycopg2", "postgresql")
    with contextlib.closing(psycopg2.connect(url)) as db, db.cursor() as cursor:
        cursor.execute(
            "SELECT kind, actor, coid FROM ibkr_trade_journal WHERE run_id = %s ORDER BY id", (run_id,)
        )
        return [tuple(row) for row in cursor.fetchall()]  # type: ignore[misc]


def _journal_fills(database: str) -> list[str]:
    """The execution ids ibkr_fill journaled (a row per run ibkr_on_fill started)."""
    import psycopg2

    url = database.replace("postgresql+psycopg2", "postgresql")
    with contextlib.closing(psycopg2.connect(url)) as db, db.cursor() as cursor:
        cursor.execute("SELECT to_regclass('ibkr_trade_journal')")
        if cursor.fetchone()[0] is None:
            return []
        cursor.execute(
            "SELECT coid, payload FROM ibkr_trade_journal WHERE dag_id = 'ibkr_fill' AND kind = 'fill'"
        )
        return [json.loads(payload)["execution_id"] for _, payload in cursor.fetchall()]


def _kill_host(root: int) -> None:
    """SIGKILL a worker and everything under it, as when its machine dies."""
    tree = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def _secrets_are_required_and_private(work: Path, info: dict[str, Any]) -> None:
    """No password-less PostgreSQL or Redis, and the files naming passwords are 0600 (issue 30)."""
    import stat
    from urllib.parse import urlsplit

    import psycopg2
    import redis

    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    for name in ("cluster.json", "passwords.json"):
        assert stat.S_IMODE((work / name).stat().st_mode) == 0o600, name
    broker = urlsplit(info["redis_url"])
    assert broker.password and len(broker.password) >= 32
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=broker.port, socket_timeout=5).ping()
    database = urlsplit(info["database"].replace("postgresql+psycopg2", "postgresql"))
    assert database.password and len(database.password) >= 24
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(host="127.0.0.1", port=database.port, user="airflow", dbname="airflow").close()


def _armed(database: str, key: str) -> bool:
    """Whether a watcher stored ``key`` as true in Airflow's asset state store."""
    import psycopg2

    url = database.replace("postgresql+psycopg2", "postgresql")
    with contextlib.closing(psycopg2.connect(url)) as db, db.cursor() as cursor:
        cursor.execute("SELECT value FROM asset_state_store WHERE key = %s", (key,))
        row = cursor.fetchone()
    return row is not None and str(row[0]).strip().lower() == "true"


def _drawdown_reports(api: Api, seconds: float = 240) -> dict[str, dict[str, Any]]:
    """Account id -> the risk report of ibkr_drawdown_guard's successful runs, once there is one."""
    deadline = time.monotonic() + seconds
    while True:
        runs = api.get("dags/ibkr_drawdown_guard/dagRuns", state="success")["dag_runs"]
        reports = {
            report["account_id"]: report
            for run in runs
            for report in api.xcom("ibkr_drawdown_guard", run["dag_run_id"], "risk_report")
        }
        if reports:
            return reports
        assert time.monotonic() < deadline, "ibkr_drawdown_guard did not run in time"
        time.sleep(1)


@pytest.mark.timeout(1500)
def test_celery_cluster_two_workers_one_session(tmp_path: Path) -> None:
    work = tmp_path / "cluster"
    dags = dag_folder(
        tmp_path,
        "ibkr_cluster_fanout",
        "ibkr_order_and_wait",
        "ibkr_approved_place_retry",
        "ibkr_on_fill",
        "ibkr_fill_burst",
        "ibkr_drawdown_guard",
    )
    env = user_env(
        IBKR_CLUSTER_PORT=str(free_port()),
        IBKR_CLUSTER_DIR=str(work),
        IBKR_CLUSTER_DAGS=str(dags),
        IBKR_DRAWDOWN_DAILY_LOSS="3000",
    )
    with running_script(
        "cluster.py", env, tmp_path / "cluster.out", boot_seconds=720, stop_seconds=90
    ) as cluster_script:
        info: dict[str, Any] = json.loads((work / "cluster.json").read_text())
        _secrets_are_required_and_private(work, info)
        api = Api(info["url"], info["password"])
        sandbox_url = info["sandbox_url"]
        workers = {name: info["pids"][name] for name in ("worker-1", "worker-2")}

        # 1. sixteen mapped tasks over both workers, one IBKR login
        run_id = api.trigger("ibkr_cluster_fanout")
        assert api.finish("ibkr_cluster_fanout", run_id) == "success"
        reports = [api.xcom("ibkr_cluster_fanout", run_id, "read_accounts", i) for i in range(16)]
        assert {r["host"] for r in reports} == {"worker-1", "worker-2"}, reports
        assert {r["airflow_home"] for r in reports} == {info["homes"]["worker-1"], info["homes"]["worker-2"]}
        assert len({r["pid"] for r in reports}) > 2  # tasks in processes of their own
        assert all(r["accounts"] == reports[0]["accounts"] and r["accounts"] for r in reports)
        _one_login(_sandbox_stats(sandbox_url))

        # 5 (checked at the end). event-driven on IBKR's PnL: once ibkr_drawdown_guard's watcher
        # (spl, in the triggerer) has armed, MSFT falls and DU2345678's day passes the guard's
        # loss (3,000 here): a run reports on the account
        deadline = time.monotonic() + 240
        while not _armed(info["database"], "armed:DU2345678:daily_pnl:below:-3000"):
            assert time.monotonic() < deadline, "the drawdown watcher did not arm in 240 s"
            time.sleep(1)
        requests.post(
            f"{sandbox_url}/__sandbox__/prices", json={"conid": MSFT, "price": 380}, timeout=30
        ).raise_for_status()

        # 2. a deferrable order wait frees its worker slot and finishes in the triggerer, which
        # follows the order on IBKR's websocket. The price crosses the limit only once the
        # trigger has found the order resting (a fixed delay raced the triggerer's start on a
        # loaded machine: its first check came after it).
        run_id = api.trigger("ibkr_order_and_wait", {"fill_after": 3600})
        logs = work / "task-logs" / "dag_id=ibkr_order_and_wait"
        trigger_logs = "run_id=*/task_id=wait_for_fill/attempt=1.log.trigger.*.log"
        deadline = time.monotonic() + 240
        following = "is Submitted; following it on IBKR's websocket"
        while not any(following in p.read_text() for p in logs.glob(trigger_logs)):
            assert time.monotonic() < deadline, "the trigger did not check the resting order in 240 s"
            time.sleep(0.5)
        sensor = api.task_instance("ibkr_order_and_wait", run_id, "wait_for_fill")
        assert sensor["state"] == "deferred", sensor  # no worker slot held while the trigger waits
        requests.post(
            f"{sandbox_url}/__sandbox__/prices", json={"conid": VTI, "price": 279.5}, timeout=30
        ).raise_for_status()
        assert api.finish("ibkr_order_and_wait", run_id) == "success"
        # the trigger's own log (written by the triggerer beside the task's) saw it through; the
        # triggerer writes it as its trigger process reports, which on a loaded machine can
        # trail the task's own end by seconds
        (trigger_log,) = logs.glob(trigger_logs)
        deadline = time.monotonic() + 60
        while "Trigger fired event" not in (trigger_lines := trigger_log.read_text()):
            assert time.monotonic() < deadline, trigger_lines[-3000:]
            time.sleep(0.5)

        # 3. a person approves; a worker dies while IBKR holds the answer to the placement: the
        # retry adopts the order, and the journal (PostgreSQL) holds it once
        placed_before = _sandbox_stats(sandbox_url).get("orders_placed", 0)
        run_id = api.trigger("ibkr_approved_place_retry")
        deadline = time.monotonic() + 240
        while api.task_instance("ibkr_approved_place_retry", run_id, "approve")["state"] != "awaiting_input":
            assert time.monotonic() < deadline, "no approval was asked for in 240 s"
            time.sleep(0.5)
        wait_until_parked(work / "logs" / "scheduler.log", run_id)
        requests.post(
            f"{sandbox_url}/__sandbox__/faults",
            json={
                "path": "/v1/api/iserver/account/DU2345678/orders",
                "method": "POST",
                "kind": "delay_after",
                "delay": 120,
            },
            timeout=30,
        ).raise_for_status()
        approved = requests.patch(
            f"{info['url']}/api/v2/dags/ibkr_approved_place_retry/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails",
            headers=api.headers,
            json={"chosen_options": ["Approve"], "params_input": {}},
            timeout=30,
        )
        assert approved.status_code == 200, approved.text
        deadline = time.monotonic() + 240
        while _sandbox_stats(sandbox_url).get("orders_placed", 0) == placed_before:
            assert time.monotonic() < deadline, "the order was not placed in 240 s"
            time.sleep(0.2)
        placing = api.task_instance("ibkr_approved_place_retry", run_id, "place_order")
        victim = _worker_running(int(placing["pid"]), workers)
        _kill_host(workers[victim])
        assert api.finish("ibkr_approved_place_retry", run_id, seconds=400) == "success"
        placed = api.task_instance("ibkr_approved_place_retry", run_id, "place_order")
        assert placed["try_number"] == 2, placed
        result = api.xcom("ibkr_approved_place_retry", run_id, "place_order")
        assert result["adopted"] is True, result
        # the retry starts about 10 s after the heartbeat stopped, inside the dead worker's lease,
        # and waits out at most the rest of it (recorded: the README quotes it)
        print(f"retry's placement lock wait: {result['lock_wait_seconds']} s")
        assert result["lock_wait_seconds"] <= REDIS_LOCK_TTL_SECONDS + 2, result
        assert _sandbox_stats(sandbox_url)["orders_placed"] == placed_before + 1  # one order, not two
        assert _seconds(placed) < REDIS_LOCK_TTL_SECONDS + 15, placed  # not blocked past the lease
        journaled = _journal_rows(info["database"], run_id)
        assert [(kind, actor) for kind, actor, _ in journaled] == [
            ("plan", None),
            ("decision", "admin"),
            ("order", None),
        ], journaled
        assert journaled[2][2] == result["coid"]  # the adopted order, once
        _one_login(_sandbox_stats(sandbox_url))

        # 4. event-driven: ibkr_on_fill's watcher (IbkrFillEventTrigger in the triggerer) starts
        # one ibkr_fill run per fill, which journals it, also across a triggerer killed and
        # restarted mid-burst
        run_id = api.trigger("ibkr_fill_burst", {"count": 6, "gap": 1.0})
        filled_before = _sandbox_stats(sandbox_url).get("orders_placed", 0)
        deadline = time.monotonic() + 240
        while _sandbox_stats(sandbox_url).get("orders_placed", 0) < filled_before + 3:
            assert time.monotonic() < deadline, "the burst did not start in 240 s"
            time.sleep(0.2)
        cluster_script.send_signal(signal.SIGUSR1)  # the triggerer dies and starts again
        assert api.finish("ibkr_fill_burst", run_id) == "success"
        placed_total = _sandbox_stats(sandbox_url)["orders_placed"]
        deadline = time.monotonic() + 240
        while len(on_fill := _journal_fills(info["database"])) < placed_total:
            assert time.monotonic() < deadline, f"{len(on_fill)} of {placed_total} fills journaled"
            time.sleep(1)

        time.sleep(8)  # a repeated fill event would come now (ids are stored 5 s after their event)
        on_fill = _journal_fills(info["database"])
        # one run and one row per fill: none lost across the kill, none twice (a fill fired just
        # before the kill fires again after the restart, and its run id is taken)
        assert len(on_fill) == placed_total and len(set(on_fill)) == placed_total, on_fill
        fill_runs = [r["dag_run_id"] for r in api.get("dags/ibkr_fill/dagRuns", limit=100)["dag_runs"]]
        assert sorted(fill_runs) == sorted(f"fill__{execution_id}" for execution_id in on_fill), fill_runs
        print(f"fills placed: {placed_total}, ibkr_fill runs: {len(fill_runs)}, journal rows: {len(on_fill)}")
        assert "triggerer killed and started again" in (tmp_path / "cluster.out").read_text()
        # 5. the drawdown guard's run (MSFT fell after step 1)
        assert "DU2345678" in _drawdown_reports(api), "no drawdown report on DU2345678"
    leftovers = [path for path in info["removed_at_stop"] if Path(path).exists()]
    assert not leftovers, leftovers
