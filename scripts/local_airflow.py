"""Running a local Airflow for the repository's own tools: the ``airflow`` command of this
environment, its environment for one ``AIRFLOW_HOME``, a free loopback port, waiting until
something is ready, and stopping a process group. One module for ``scripts/`` (``make demo``,
``make up``, ``make cluster``), ``tests/`` and ``benchmarks/`` (import it as ``local_airflow``
from a script, as ``scripts.local_airflow`` elsewhere).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: The ``airflow`` script installed beside this interpreter (the project's .venv).
AIRFLOW = str(BIN / "airflow")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (servers bind loopback only)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def journal_connection(home: Path) -> str:
    """The ``ibkr_journal`` connection (JSON) of a local Airflow: the trade journal in a SQLite
    file beside Airflow's own database."""
    return json.dumps({"conn_type": "sqlite", "host": str(home / "ibkr_journal.db")})


def airflow_env(home: Path, dags_folder: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any Airflow setting or connection of the caller's,
    for an Airflow in ``home`` (SQLite there unless ``extra`` names another database) reading
    DAGs from ``dags_folder``, with this environment's ``airflow`` first on PATH (``airflow
    standalone`` starts its components as ``airflow`` from PATH), and the trade journal's
    connection ``ibkr_journal`` in ``home`` (:func:`journal_connection`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_CONN_IBKR_JOURNAL": journal_connection(home),
            **parse_interval(),
            **extra,
        }
    )
    return env


def parse_interval() -> dict[str, str]:
    """``IBKR_DAG_PARSE_SECONDS``: how often the dag-processor parses each DAG file again
    (Airflow's default, 30 s, when unset). The tests that keep `make up` or `make cluster`
    running for minutes set 600: their DAG files never change, and parsing every file every 30 s
    is CPU the rest of the suite needs."""
    seconds = os.environ.get("IBKR_DAG_PARSE_SECONDS")
    return {"AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": seconds} if seconds else {}


def run_airflow(
    args: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``airflow *args`` in a process of its own, its output captured."""
    return subprocess.run(
        [AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
    )


def wait_until(
    what: str,
    ready: Callable[[], bool],
    *,
    seconds: float,
    processes: Iterable[subprocess.Popen[bytes] | subprocess.Popen[str]] = (),
    interval: float = 0.5,
) -> None:
    """Poll ``ready()`` until it is true; raise when ``seconds`` pass or one of ``processes``
    (what should become ready) exits first."""
    deadline = time.monotonic() + seconds
    watched = list(processes)
    while not ready():
        for process in watched:
            if process.poll() is not None:
                raise RuntimeError(f"{what}: the process exited ({process.returncode}) before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {seconds:g} s")
        time.sleep(interval)


def answers(port: int, probe: bytes, expected: bytes) -> bool:
    """Whether a server on 127.0.0.1:``port`` answers ``probe`` with ``expected`` (e.g. Redis's
    PING/+PONG); False while it is not listening yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(probe)
            time.sleep(0.05)  # a multi-command probe's answers arrive together
            return expected in conn.recv(256)
    except OSError:
        return False


def stop_on_interrupts() -> None:
    """From here on, Ctrl-C (SIGINT) and SIGTERM raise ``KeyboardInterrupt`` in this process, so
    that the script's ``finally`` stops what it started, also while it is still starting it.

    Both are set explicitly: with SIGTERM's default a SIGTERM during the boot ended the script at
    once and left ``airflow standalone`` (a session of its own) holding its port. A script started
    as a background job of another script (``make up &`` in a shell script) begins with SIGINT
    ignored, and so would every process it starts: ``airflow standalone`` ignored the SIGINT that
    asks it to stop its components, and was killed 40 s later instead. A handled signal is reset to
    its default in a child, so the children can be interrupted again as well."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def hold_interrupts_while_stopping() -> None:
    """From here on, Ctrl-C and SIGTERM no longer interrupt this process: an impatient second
    Ctrl-C raised ``KeyboardInterrupt`` in the middle of the stopping itself, which then left
    Airflow and the sandbox running. Every step of the scripts' stopping has its own time bound
    (:func:`stop_process_group`, the cluster's and the sandbox's waits)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def stop_process_group(leader: subprocess.Popen[bytes], *, first: signal.Signals, seconds: float) -> None:
    """Stop ``leader`` (started with ``start_new_session=True``) and every process of its group.

    ``first`` goes to the leader alone, so that it stops its own children in its own order (``airflow
    standalone`` does so on SIGINT: it terminates each component, then reads their last output).
    Whatever of the group still runs after ``seconds``, the leader's exit notwithstanding, gets
    SIGKILL: a component that outlives the command would keep its port, its database and its
    executor's workers after Ctrl-C.
    """
    with contextlib.suppress(ProcessLookupError):
        leader.send_signal(first)
    deadline = time.monotonic() + seconds
    with contextlib.suppress(subprocess.TimeoutExpired):
        leader.wait(timeout=seconds)
    while time.monotonic() < deadline and _group_alive(leader.pid):
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader.pid, signal.SIGKILL)
    leader.wait(timeout=10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
