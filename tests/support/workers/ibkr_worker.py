"""Provider processes that use the provider like tasks would (for multi-process tests).

Usage: python -m tests.support.workers.ibkr_worker ACTION N COUNT
  ACTION    "accounts" (list accounts via IbkrHook), "requests" (N x GET /iserver/accounts),
            "place" (one order through the client's safe placement, without a cOID, so nothing
            but the placement lock orders the placements), "place_unlocked" (the same with the
            lock replaced by a no-op: the control case) or "place_naive" (POST the order, then
            confirm its question, as a script without the client's order service would)
  COUNT     how many worker processes; worker INDEX picks the account (even: DU2345678, odd:
            DU1234567)

This process imports the provider and Airflow once, then forks COUNT workers: each is its own OS
process (own pid, own client, own connections and locks) that builds its hook, reports ready and
waits at a start barrier, so eight workers cost one interpreter start-up instead of eight (about
4 s of CPU each on this machine). The barrier is a pipe whose write end only this process holds:
closing it wakes every worker at the same instant. It prints "IBKR-WORKER-READY" once every worker
is ready, waits for a line on stdin, opens the barrier, and after the workers exit prints one line
"IBKR-WORKER-RESULT <json>" per worker in index order: pid, started, asked_at (when it first asked
for the session), finished, requests, the session stats, exit_code and, when present, accounts,
order_id or error; a worker that died without a result reports its exit code and log instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

READY = "IBKR-WORKER-READY"
RESULT = "IBKR-WORKER-RESULT "


def main() -> int:
    action, count, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # The protocol (READY, RESULT) keeps stdout; everything else that writes to stdout (Airflow's
    # logging) goes to stderr.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    # Imported before the fork, so the workers share the start-up; nothing is built yet. That
    # includes what the hook and Airflow import on first use: the client (requests, PyJWT,
    # cryptography) and the task runner that ``mask_secret`` reaches for (a task process has it).
    import airflow.sdk.execution_time.task_runner  # noqa: F401

    import ibkr_provider.client.api.orders
    import ibkr_provider.client.client
    import ibkr_provider.hooks.ibkr  # noqa: F401

    if threading.active_count() != 1:  # forking a threaded process could copy a held lock
        raise SystemExit(f"the worker parent has {threading.active_count()} threads before fork")
    # The workers share that heap copy-on-write; the collector would walk (and so copy) all of it
    # in each worker's first full collection. Frozen objects are never examined.
    gc.collect()
    gc.freeze()
    work = Path(tempfile.mkdtemp(prefix="ibkr-workers-"))
    ready_r, ready_w = os.pipe()
    gate_r, gate_w = os.pipe()
    pids = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker: never returns into this loop
            protocol.close()
            os.close(ready_r)
            os.close(gate_w)
            code = 1
            try:
                code = _worker(action, count, index, work, ready_w, gate_r)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(ready_w)
    os.close(gate_r)
    ready = b""
    while len(ready) < workers:
        chunk = os.read(ready_r, workers)
        if not chunk:  # a worker died before it was ready: let the parent see why
            break
        ready += chunk
    if len(ready) < workers:  # stop the rest, say why (each worker's log), and fail
        for index, pid in enumerate(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            sys.stderr.write(f"--- worker {index}:\n{_log(work, index)}\n")
        sys.stderr.flush()
        shutil.rmtree(work, ignore_errors=True)
        protocol.write(f"only {len(ready)} of {workers} ready\n")
        protocol.flush()
        return 1
    protocol.write(f"{READY}\n")
    protocol.flush()
    sys.stdin.readline()
    os.close(gate_w)  # the barrier opens for every worker at once
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    for index, code in enumerate(codes):
        result_file = work / f"result-{index}.json"
        if result_file.exists():
            report = json.loads(result_file.read_text())
        else:
            report = {"error": "the worker died without a result", "log": _log(work, index)}
        report["exit_code"] = code
        protocol.write(RESULT + json.dumps(report) + "\n")
    protocol.flush()
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _log(work: Path, index: int) -> str:
    log = work / f"log-{index}.txt"
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def _worker(action: str, count: int, index: int, work: Path, ready_w: int, gate_r: int) -> int:
    # Everything the worker writes (Airflow's logging included) goes to its own log file.
    log = os.open(work / f"log-{index}.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    from ibkr_provider.client import IbkrError
    from ibkr_provider.client.models.orders import OrderTicket
    from ibkr_provider.hooks.ibkr import IbkrHook

    hook = IbkrHook()
    client = hook.get_conn()  # reads the connection; no request yet
    os.write(ready_w, b"r")
    os.close(ready_w)
    os.read(gate_r, 1)  # returns at EOF: when the parent closes the barrier's write end
    started = time.time()
    result: dict[str, Any] = {"pid": os.getpid(), "started": started}
    done = 0
    try:
        result["asked_at"] = time.time()
        if action == "accounts":
            result["accounts"] = [a.account_id for a in client.list_accounts()]
        elif action == "requests":
            for _ in range(count):
                client.request("GET", "/iserver/accounts")
                done += 1
        elif action in ("place", "place_unlocked", "place_naive"):
            # One resting paper order per worker, far below the market.
            account = ("DU2345678", "DU1234567")[index % 2]
            ticket = OrderTicket(conid=12340038, side="BUY", quantity=1, order_type="LMT", limit_price=1.0)
            if action == "place_naive":
                client.brokerage_accounts()
                body = {"orders": [ticket.to_json(account)]}
                question = client.request("POST", f"/iserver/account/{account}/orders", json=body)
                client.request("POST", f"/iserver/reply/{question[0]['id']}", json={"confirmed": True})
            else:
                if action == "place_unlocked":
                    client.sessions.lock = lambda name, timeout: contextlib.nullcontext(_NoLease())  # type: ignore[method-assign]
                result["order_id"] = client.orders.place(
                    account, ticket, allowed_message_ids=["o163"]
                ).order_id
            done += 1
        else:
            raise SystemExit(f"unknown action {action}")
    except IbkrError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["requests"] = done
    result["finished"] = time.time()
    result["session"] = dataclasses.asdict(client.sessions.stats)
    hook.close()
    (work / f"result-{index}.json").write_text(json.dumps(result))
    return 1 if "error" in result else 0


class _NoLease:
    """The control case's stand-in for a held lock: nothing is held, nothing is checked."""

    def check(self) -> None:
        return None


if __name__ == "__main__":
    sys.exit(main())
