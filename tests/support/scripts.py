"""Run one of the repository's long-running scripts (`make up`, `make cluster`) as a user does:
start it, wait until it says it is ready, and stop it with SIGTERM as Ctrl-C would (twice)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from scripts.local_airflow import ROOT as REPO_ROOT


def user_env(**extra: str) -> dict[str, str]:
    """This environment without Airflow settings or connections (the script sets its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(extra)
    return env


@contextmanager
def running_script(
    script: str, env: dict[str, str], output: Path, *, boot_seconds: float, stop_seconds: float
) -> Iterator[subprocess.Popen[bytes]]:
    """``scripts/<script>`` running, its output in ``output``, once it has printed "Ctrl-C stops".

    On leaving, SIGTERM stops it, and nothing it started may still run 30 s later. A second
    SIGTERM follows half a second after the first, while it stops, as from an impatient person
    pressing Ctrl-C twice: it must not cut the stopping short.
    """
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "scripts" / script)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    try:
        deadline = time.monotonic() + boot_seconds
        while "Ctrl-C stops" not in output.read_text():
            assert process.poll() is None, output.read_text()[-4000:]
            assert time.monotonic() < deadline, f"{script} did not come up in {boot_seconds:g} s"
            time.sleep(1)
        yield process
    finally:
        children = psutil.Process(process.pid).children(recursive=True) if process.poll() is None else []
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=stop_seconds)
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"still running after SIGTERM: {[p.pid for p in alive]}"
