"""Run several provider processes at once against one sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.airflow_cli import REPO_ROOT


def run_workers(
    count: int,
    action: str,
    env_overrides: dict[str, str],
    *,
    n: int = 1,
    lead: float = 12.0,
    timeout: float = 300,
    allow_errors: bool = False,
) -> list[dict[str, Any]]:
    """Start ``count`` worker processes that all begin ``action`` at the same wall-clock moment.

    ``allow_errors`` returns failed workers' reports (with an ``error`` key) instead of failing.
    """
    start_at = time.time() + lead  # long enough for every process to import Airflow first
    env = {**os.environ, **env_overrides, "PYTHONPATH": str(REPO_ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.workers.ibkr_worker", str(start_at), action, str(n), str(index)],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(count)
    ]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            marker = "IBKR-WORKER-RESULT "
            lines = [line[len(marker) :] for line in out.splitlines() if line.startswith(marker)]
            assert lines and (proc.returncode == 0 or allow_errors), err[-3000:] + out[-1000:]
            results.append(json.loads(lines[-1]))
    finally:
        # A failed worker must not leave its siblings running: they would keep calling the
        # shared sandbox (and log in again after the next test's reset) during later tests.
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert all(r["started"] >= start_at for r in results)
    return results


def cache_env(cache_dir: Path) -> dict[str, str]:
    return {"AIRFLOW__IBKR__SESSION_CACHE_DIR": str(cache_dir)}
