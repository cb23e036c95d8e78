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
from pathlib import Path
from typing import Any

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
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.workers.ibkr_worker", action, str(n), str(index)],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(count)
    ]
    results = []
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == READY, line + (proc.stderr.read() if proc.stderr else "")
        for proc in procs:  # the barrier opens
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            lines = [line[len(RESULT) :] for line in out.splitlines() if line.startswith(RESULT)]
            assert lines and (proc.returncode == 0 or allow_errors), err[-3000:] + out[-1000:]
            results.append(json.loads(lines[-1]))
    finally:
        # A failed worker must not leave its siblings running: they would keep calling the
        # shared sandbox (and log in again after the next test's reset) during later tests.
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def cache_env(cache_dir: Path) -> dict[str, str]:
    return {"AIRFLOW__IBKR__SESSION_CACHE_DIR": str(cache_dir)}
