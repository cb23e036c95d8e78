"""Run several provider processes at once against one sandbox, released by a start barrier.

Each worker imports the provider and builds its hook, says READY, and waits for a line on its
stdin; once every worker is ready, the parent releases them all at once. No fixed sleeps: the
start is as close to simultaneous as the operating system allows, and each worker reports when
it started and when it asked for the session, so a test can check that they really overlapped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from tests.support.airflow_cli import REPO_ROOT

READY = "IBKR-WORKER-READY"
RESULT = "IBKR-WORKER-RESULT "


def run_workers(
    count: int,
    action: str,
    env_overrides: dict[str, str],
    *,
    n: int = 1,
    timeout: float = 300,
    allow_errors: bool = False,
) -> list[dict[str, Any]]:
    """Start ``count`` worker processes running ``action`` (see ``workers/ibkr_worker.py``),
    release them together, and return their reports in start order.

    ``allow_errors`` returns failed workers' reports (with an ``error`` key) instead of failing.
    """
    env = {**os.environ, **env_overrides, "PYTHONPATH": str(REPO_ROOT)}
    # Logs go to files, not pipes: a worker that fills a pipe nobody reads yet would block while
    # holding a lock its siblings wait for.
    logs = [tempfile.TemporaryFile(mode="w+") for _ in range(count)]  # noqa: SIM115 - closed below
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.workers.ibkr_worker", action, str(n), str(index)],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=logs[index],
            text=True,
        )
        for index in range(count)
    ]
    results = []
    try:
        for proc, log in zip(procs, logs, strict=True):
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == READY, line + _tail(log)
        for proc in procs:  # the barrier opens
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc, log in zip(procs, logs, strict=True):
            out, _ = proc.communicate(timeout=timeout)
            lines = [line[len(RESULT) :] for line in out.splitlines() if line.startswith(RESULT)]
            assert lines and (proc.returncode == 0 or allow_errors), _tail(log) + out[-1000:]
            results.append(json.loads(lines[-1]))
    finally:
        # A failed worker must not leave its siblings running: they would keep calling the
        # shared sandbox (and log in again after the next test's reset) during later tests.
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        for log in logs:
            log.close()
    return results


def _tail(log: IO[str]) -> str:
    log.seek(0)
    return log.read()[-3000:]


def cache_env(cache_dir: Path) -> dict[str, str]:
    return {"AIRFLOW__IBKR__SESSION_CACHE_DIR": str(cache_dir)}
