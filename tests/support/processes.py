"""Run several provider processes at once against one sandbox, released by a start barrier.

One parent process imports the provider and forks the workers (``workers/ibkr_worker.py``); each
builds its hook and waits at a barrier the parent opens for all of them at once once every one is
ready. No fixed sleeps: the start is as close to simultaneous as the operating system allows, and
each worker reports when it started and when it asked for the session, so a test can check that
they really overlapped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from scripts.local_airflow import ROOT as REPO_ROOT
from tests.support.workers.ibkr_worker import READY, RESULT


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
    parent = subprocess.Popen(
        [sys.executable, "-m", "tests.support.workers.ibkr_worker", action, str(n), str(count)],
        env=env,
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the workers share its process group: one kill stops them all
    )
    try:
        assert parent.stdout is not None and parent.stdin is not None
        line = parent.stdout.readline()
        if line.strip() != READY:  # the parent has stopped its workers and is exiting
            out, err = parent.communicate(timeout=60)
            raise AssertionError(f"workers not ready: {line}{out[-2000:]}{err[-3000:]}")
        parent.stdin.write("go\n")  # the barrier opens
        parent.stdin.flush()
        out, err = parent.communicate(timeout=timeout)
        reports = [json.loads(line[len(RESULT) :]) for line in out.splitlines() if line.startswith(RESULT)]
        assert parent.returncode == 0 and len(reports) == count, out[-2000:] + err[-3000:]
        for report in reports:
            assert report["exit_code"] == 0 or (allow_errors and "pid" in report), report
    finally:
        # A failed worker must not leave its siblings running: they would keep calling the
        # shared sandbox (and log in again after the next test's reset) during later tests.
        # The parent reaps its workers before it exits, so after a clean run the group is empty.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.communicate()
    return reports


def cache_env(cache_dir: Path) -> dict[str, str]:
    return {"AIRFLOW__IBKR__SESSION_CACHE_DIR": str(cache_dir)}
