"""The faults of a chaos run (benchmarks/chaos.py), each done to the running cluster the way it
happens for real: processes are SIGKILLed through the cluster's control folder (scripts/cluster.py
starts them again), IBKR's misbehaviour is asked of the sandbox's control plane.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import psutil
import requests

from ibkr_provider.workflows.order_guard import order_coid

PAPER = "DU2345678"
WORKERS = ("worker-1", "worker-2")
#: The market ticks every second during a run, so the rebalances' limit orders meet their price
#: within seconds (the sandbox's default tick is 5 s; a restart restores it, so it is set again).
TICK_SECONDS = 1.0


class Api(Protocol):
    def call(self, method: str, path: str, **kwargs: Any) -> Any: ...


class Faults:
    """Draws the fault schedule from the run's random generator and carries it out, recording
    each fault (what, when, details) in ``record``."""

    def __init__(
        self, info: dict[str, Any], work: Path, api: Api, rng: random.Random, record: list[dict[str, Any]]
    ) -> None:
        self.info, self.work, self.api, self.rng, self.record = info, work, api, rng, record
        self.sandbox = info["sandbox_url"]
        self.started = time.monotonic()
        self._sandbox_control("POST", "config", {"price_tick_seconds": TICK_SECONDS})

    def schedule(self, plan: Any) -> list[tuple[float, str]]:
        kinds = (
            ["redis"] * plan.redis
            + ["postgres"] * plan.postgres
            + ["worker during placement"]
            + ["worker"] * (plan.worker_kills - 1)
            + ["5xx burst"] * plan.bursts
            + ["sessions expired"] * plan.expiries
            + ["sandbox restart"] * plan.sandbox_restarts
        )
        times = sorted(self.rng.uniform(0.1, 0.8) * plan.seconds for _ in kinds)
        self.rng.shuffle(kinds)
        drawn = list(zip(times, kinds, strict=True))
        if plan.placement_kill_at is not None:
            drawn = [
                (plan.placement_kill_at if kind == "worker during placement" else at, kind)
                for at, kind in drawn
            ]
        return sorted(drawn)

    def run(self, plan: Any, started: float) -> None:
        """Strike each fault at its time; the kill during a placement waits for one on a thread
        of its own, so the faults after it keep their times."""
        self.started = started
        waiting: list[threading.Thread] = []
        for at, kind in self.schedule(plan):
            time.sleep(max(0.0, started + at - time.monotonic()))
            if kind == "worker during placement":
                waiting.append(threading.Thread(target=self.strike_and_record, args=(kind,), daemon=True))
                waiting[-1].start()
            else:
                self.strike_and_record(kind)
        for thread in waiting:
            thread.join()

    def strike_and_record(self, kind: str) -> None:
        at = round(time.monotonic() - self.started, 1)
        try:
            details = self.strike(kind)
        except Exception as exc:
            details = {"error": f"{type(exc).__name__}: {exc}"}
        entry = {"at": at, "done_at": round(time.monotonic() - self.started, 1), "fault": kind, **details}
        self.record.append(entry)
        print(f"[{entry['done_at']:5.0f} s] fault: {json.dumps(entry)}", flush=True)

    def make_the_market(self, stop: threading.Event) -> None:
        """The market meets resting limit orders: 5 s after a limit order arrives and still
        rests, its instrument's price moves a cent through the limit (the sandbox's price model
        alone can keep a limit a hair off the market for minutes), so each limit order's fill
        wait is deferred to the triggerer for a few seconds and then sees its fill."""
        while not stop.wait(1.0):
            with contextlib.suppress(requests.RequestException):
                for order in self._sandbox_control("GET", "orders"):
                    resting = order["status"] in ("Submitted", "PreSubmitted") and order["limit_price"]
                    if resting and time.time() - order["created_at"] > 5:
                        cross = -0.01 if order["side"] == "BUY" else 0.01
                        price = round(float(order["limit_price"]) + cross, 2)
                        self._sandbox_control("POST", "prices", {"conid": order["conid"], "price": price})

    def strike(self, kind: str) -> dict[str, Any]:
        if kind in ("redis", "postgres"):
            return self.restart(kind)
        if kind == "worker":
            return self.restart(self.rng.choice(WORKERS))
        if kind == "worker during placement":
            return self.kill_a_placing_worker()
        if kind == "5xx burst":
            for fault in ({"kind": 503, "count": 6}, {"kind": "drop", "count": 3}):
                self._sandbox_control("POST", "faults", {"path": "/v1/api/*", **fault})
            return {"answers": "6 x 503, 3 dropped connections"}
        if kind == "sessions expired":
            return {"sessions_ended": self._sandbox_control("POST", "sessions/expire")["ended"]}
        if kind == "sandbox restart":
            details = self.restart("sandbox")
            self._sandbox_control("POST", "config", {"price_tick_seconds": TICK_SECONDS})
            return details
        raise ValueError(kind)

    # ------------------------------------------------------------------ the cluster's processes
    def restart(self, name: str) -> dict[str, Any]:
        """Ask scripts/cluster.py to kill ``name`` and start it again; wait until it did."""
        seen = len(self._events())
        (self.work / "control" / name).touch()
        deadline = time.monotonic() + 120
        while not any(e["name"] == name for e in self._events()[seen:]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not restart {name} in 120 s")
            time.sleep(0.2)
        return {"restarted": name}

    def _events(self) -> list[dict[str, Any]]:
        path = self.work / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def worker_pids(self) -> dict[str, int]:
        """Each worker's current pid: cluster.json's, then each restart's."""
        pids = {name: int(self.info["pids"][name]) for name in WORKERS}
        for event in self._events():
            if event["name"] in pids and "pid" in event:
                pids[event["name"]] = int(event["pid"])
        return pids

    def kill_a_placing_worker(self) -> dict[str, Any]:
        """IBKR holds the answer to the next order placement on the paper account for 30 s; the
        worker whose task sent it (found by the order's cOID: the task instance it belongs to)
        is SIGKILLed then, and started again. The retry must adopt that order, not place another."""
        known = set(self._sandbox_coids())
        restarts = self._sandbox_restarts()
        self._sandbox_control(
            "POST",
            "faults",
            {
                "path": f"/v1/api/iserver/account/{PAPER}/orders",
                "method": "POST",
                "kind": "delay_after",
                "delay": 30,
            },
        )
        deadline = time.monotonic() + 300
        while any(f["kind"] == "delay_after" for f in self._sandbox_control("GET", "faults")):
            if time.monotonic() > deadline:
                return {"placement": "none came in 300 s", **self.restart(self.rng.choice(WORKERS))}
            time.sleep(0.2)
        # The sandbox takes the fault off its list as the request arrives and records the order
        # a moment later: on a loaded machine the first look at the orders came before it.
        deadline = time.monotonic() + 10
        while not (held := [coid for coid in self._sandbox_coids() if coid not in known]):
            if self._sandbox_restarts() != restarts:
                # the sandbox restarted before any placement came in, and forgot the fault
                # (faults are not IBKR's state): hold the next placement again
                return self.kill_a_placing_worker()
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            running = self.api.call(
                "GET",
                "dags/ibkr_rebalance/dagRuns/~/taskInstances",
                params={"state": "running", "limit": 100},
            )["task_instances"]
            for ti in running:
                coid = order_coid("ibkr_rebalance", ti["task_id"], ti["dag_run_id"], int(ti["map_index"]))
                victim = self._worker_of(int(ti["pid"]), self.worker_pids()) if ti.get("pid") else None
                if coid in held and victim is not None:
                    details = self.restart(victim)
                    placing = {"run_id": ti["dag_run_id"], "map_index": int(ti["map_index"]), "coid": coid}
                    return {
                        "placement": f"{ti['task_id']}[{ti['map_index']}] held by IBKR",
                        **placing,
                        **details,
                    }
            time.sleep(0.5)
        return {"placement": f"no running task owns {held}", **self.restart(self.rng.choice(WORKERS))}

    @staticmethod
    def _worker_of(pid: int, workers: dict[str, int]) -> str | None:
        with contextlib.suppress(psutil.NoSuchProcess):
            process: psutil.Process | None = psutil.Process(pid)
            while process is not None:
                for name, root in workers.items():
                    if process.pid == root:
                        return name
                process = process.parent()
        return None

    def _sandbox_coids(self) -> list[str]:
        """The cOIDs of every order the sandbox holds."""
        return [order["coid"] for order in self._sandbox_control("GET", "orders")]

    def _sandbox_restarts(self) -> int:
        """How often the sandbox was started again (it forgets its faults then)."""
        return int(self._sandbox_control("GET", "stats").get("restarts", 0))

    def _sandbox_control(self, method: str, path: str, body: Any = None) -> Any:
        deadline = time.monotonic() + 60  # the sandbox may be restarting
        while True:
            try:
                answer = requests.request(method, f"{self.sandbox}/__sandbox__/{path}", json=body, timeout=30)
                answer.raise_for_status()
                return answer.json()
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
