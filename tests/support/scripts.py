"""Run one of the repository's long-running scripts (`make up`, `make cluster`) as a user does:
start it, wait until it says it is ready, and stop it with SIGTERM (twice)."""

from __future__ import annotations

import contextlib
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


#: The scripts start with SIGINT ignored, as a shell script's background job (``make up &``) starts
#: them: they must still stop on SIGTERM, and so must what they start (``airflow standalone`` stops
#: its components on SIGINT). A terminal's Ctrl-C reaches a foreground script as SIGINT instead.
_IGNORING_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def launch_script(script: str, env: dict[str, str], output: Path) -> subprocess.Popen[bytes]:
    """``scripts/<script>`` started, its output in ``output``."""
    with open(output, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", _IGNORING_SIGINT, str(REPO_ROOT / "scripts" / script)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )


def stop_script(process: subprocess.Popen[bytes], *, stop_seconds: float) -> None:
    """SIGTERM, and a second one half a second later, as from an impatient person pressing Ctrl-C
    twice (it must not cut the stopping short): the script exits within ``stop_seconds``, and
    nothing it started still runs 30 s later."""
    children = psutil.Process(process.pid).children(recursive=True) if process.poll() is None else []
    # what a child of its own session (airflow standalone, each cluster component) starts later
    # belongs to that session
    sessions = {child.pid for child in children if _session_of(child.pid) == child.pid}
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    process.wait(timeout=stop_seconds)
    _, alive = psutil.wait_procs(children, timeout=30)
    left = {
        p.pid: p
        for p in [*alive, *(p for p in psutil.process_iter() if _session_of(p.pid) in sessions)]
        if _running(p)
    }
    described = [(p.pid, command_line(p)) for p in left.values()]
    for leftover in left.values():  # stopped by the test that started them, also when it fails
        with contextlib.suppress(psutil.Error):
            leftover.kill()
    assert not left, f"still running after SIGTERM: {described}"


def _running(process: psutil.Process) -> bool:
    """Still running: not gone, and no zombie (a process whose parent died before reaping it is
    handed to PID 1, which in some containers never reaps: it runs nothing and holds no port)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:  # exited meanwhile
        return None


def command_line(process: psutil.Process) -> str:
    """``process``'s command line, or "(exited)" once it has gone."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return "(exited)"


@contextmanager
def running_script(
    script: str, env: dict[str, str], output: Path, *, boot_seconds: float, stop_seconds: float
) -> Iterator[subprocess.Popen[bytes]]:
    """``scripts/<script>`` running (:func:`launch_script`), once it has printed "Ctrl-C stops";
    on leaving, :func:`stop_script`."""
    process = launch_script(script, env, output)
    try:
        deadline = time.monotonic() + boot_seconds
        while "Ctrl-C stops" not in output.read_text():
            assert process.poll() is None, output.read_text()[-4000:]
            assert time.monotonic() < deadline, f"{script} did not come up in {boot_seconds:g} s"
            time.sleep(1)
        yield process
    finally:
        stop_script(process, stop_seconds=stop_seconds)
