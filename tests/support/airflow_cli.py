"""Run the real ``airflow`` CLI with an isolated AIRFLOW_HOME, forked from a warm interpreter
(``AirflowCli``, see airflow_fork_server.py); ``scripts/local_airflow.py`` runs it as a process of
its own and builds its environment."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from scripts.local_airflow import AIRFLOW, airflow_env
from scripts.local_airflow import ROOT as REPO_ROOT

#: How long ``dags test --use-executor`` may take to exit once its DAG run is finished.
EXECUTOR_SHUTDOWN_GRACE = 20.0


def dag_folder(parent: Path, *dag_ids: str) -> Path:
    """``parent/dags``, holding only the files of ``dag_ids`` (each from dags/ or tests/support/dags/).

    ``airflow dags test`` parses every file of its folder and writes every DAG it finds to the
    metadata database before it runs the one asked for, and a DAG processor parses every file
    again every 30 s, a process per file: with only the DAGs a test runs, each `dags test` costs
    1-3 s less CPU (dags/ holds five DAGs, tests/support/dags seven). Every example DAG's import
    is checked on its own (test_dags.py::test_dags_import_without_errors_or_connection_lookups).
    """
    folder = parent / "dags"
    folder.mkdir(exist_ok=True)
    for dag_id in dag_ids:
        sources = [
            REPO_ROOT / "dags" / f"{dag_id}.py",
            REPO_ROOT / "tests" / "support" / "dags" / f"{dag_id}.py",
        ]
        found = [source for source in sources if source.exists()]
        if not found:
            raise FileNotFoundError(f"no DAG file {dag_id}.py in dags/ or tests/support/dags/")
        shutil.copy(found[0], folder)
    return folder


def _latest_run(database: Path, after_id: int) -> tuple[int, str | None]:
    """The newest DAG run's id and state (``after_id`` and None when there is none newer)."""
    if not database.exists():
        return after_id, None
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            query = "SELECT id, state FROM dag_run WHERE id > ? ORDER BY id DESC LIMIT 1"
            found = db.execute(query, (after_id,)).fetchone()
    except sqlite3.OperationalError:  # busy, or not migrated yet: ask again on the next poll
        return after_id, None
    return (int(found[0]), str(found[1])) if found else (after_id, None)


class ForkedCommand:
    """An ``airflow`` command forked by the fork server: what a test needs of ``subprocess.Popen``.

    Its stdout and stderr go to files (one file for both when ``merged``); ``communicate`` reads
    them once the command has exited.
    """

    def __init__(self, cli: AirflowCli | None, pid: int, args: list[str], stdout: Path, stderr: Path) -> None:
        self._cli = cli
        self.pid = pid
        self.args = args
        self._stdout = stdout
        self._stderr = stderr
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and self._cli is not None:
            self.returncode = self._cli.ask({"op": "poll", "pid": self.pid})["returncode"]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            time.sleep(0.1)
        return code

    def kill(self) -> None:
        """Kill the command and every process it started (it leads a session of its own)."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return self._read(self._stdout), ("" if self._stderr == self._stdout else self._read(self._stderr))

    @staticmethod
    def _read(path: Path) -> str:
        return path.read_text(errors="replace") if path.exists() else ""


class ProcessCommand(ForkedCommand):
    """The same command as a plain process of its own (the fork server switched off)."""

    def __init__(self, process: subprocess.Popen[bytes], args: list[str], stdout: Path, stderr: Path) -> None:
        super().__init__(None, process.pid, args, stdout, stderr)
        self._process = process

    def poll(self) -> int | None:
        self.returncode = self._process.poll()
        return self.returncode


def fork_server_enabled() -> bool:
    """``IBKR_TEST_FORK_SERVER=off`` runs every ``airflow`` command as a plain process: slower
    (about 10 CPU seconds more per ``dags test``), and what to compare with when a test fails
    only through the fork server, or when Airflow's internals it relies on changed."""
    value = os.environ.get("IBKR_TEST_FORK_SERVER", "on").strip().lower()
    if value not in ("on", "off"):
        raise RuntimeError(f"IBKR_TEST_FORK_SERVER must be on or off, not {value!r}")
    return value == "on"


def _killed(command: ForkedCommand, timeout: float) -> subprocess.TimeoutExpired:
    """Kill a command that ran past ``timeout``; the error to raise, with what it wrote."""
    command.kill()
    out, err = command.communicate(30)
    return subprocess.TimeoutExpired(command.args, timeout, output=out, stderr=err)


class AirflowCli:
    """Runs ``airflow`` commands (``dags test``, ``providers list``...) for the tests of one
    pytest process, each forked from a warm interpreter started on first use (tests/support/
    airflow_fork_server.py: 4 instead of 14 CPU seconds for a ``dags test`` of the snapshot DAG).
    """

    def __init__(self, scratch: Path) -> None:
        self._scratch = scratch
        self._server: subprocess.Popen[str] | None = None
        self._commands: list[ForkedCommand] = []

    def run(
        self, args: list[str], env: dict[str, str], timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Like ``subprocess.run(["airflow", *args], capture_output=True, text=True)``."""
        if "--use-executor" in args:
            return self._run_with_executor(args, env, timeout)
        command = self._spawn(args, env, merged=False)
        try:
            out, err = command.communicate(timeout)
        except subprocess.TimeoutExpired:
            raise _killed(command, timeout) from None
        return subprocess.CompletedProcess(command.args, command.wait(), out, err)

    def _run_with_executor(
        self, args: list[str], env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """``airflow dags test --use-executor``, judged by the DAG run it creates.

        Airflow 3.3's ``LocalExecutor.end()`` joins its worker processes with no timeout and now
        and then never returns after the run has finished (apache/airflow#45683, #67870): the
        command hangs although every task is done. This waits for the run's final state in the
        metadata database, gives the command ``EXECUTOR_SHUTDOWN_GRACE`` seconds to exit on its
        own, then kills its session (workers included) and reports the run's own outcome: exit
        code 0 for ``success`` as ``dags test`` does, 1 otherwise, with a note in the output.
        """
        database = Path(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"))
        before, _ = _latest_run(database, -1)
        command = self._spawn(args, env, merged=False)
        deadline = time.monotonic() + timeout
        finished_at: float | None = None
        state: str | None = None
        note = ""
        while command.poll() is None:
            now = time.monotonic()
            if finished_at is None:
                _, state = _latest_run(database, before)
                if state in ("success", "failed"):
                    finished_at = now
            elif now - finished_at > EXECUTOR_SHUTDOWN_GRACE:
                command.kill()
                note = f"\n[test harness] the DAG run ended {state}; the executor did not shut down, killed\n"
                break
            if now > deadline:
                raise _killed(command, timeout)
            time.sleep(0.5)
        out, err = command.communicate(30)
        code = command.wait() if not note else (0 if state == "success" else 1)
        return subprocess.CompletedProcess(command.args, code, out + note, err)

    def start(self, args: list[str], env: dict[str, str]) -> ForkedCommand:
        """Start a command and return at once; its stdout and stderr are read together."""
        return self._spawn(args, env, merged=True)

    def close(self) -> None:
        """Kill what is still running and stop the server."""
        for command in self._commands:
            command.kill()
        if self._server is None:
            return
        assert self._server.stdin is not None
        self._server.stdin.close()  # the server exits at the end of its input
        try:
            self._server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._server.kill()
            self._server.wait()
        self._server = None

    def _spawn(self, args: list[str], env: dict[str, str], *, merged: bool) -> ForkedCommand:
        number = len(self._commands)
        stdout = self._scratch / f"command-{number}.out"
        stderr = stdout if merged else self._scratch / f"command-{number}.err"
        command: ForkedCommand
        if fork_server_enabled():
            request = {"op": "spawn", "args": args, "env": env, "cwd": str(REPO_ROOT)}
            pid = self.ask({**request, "stdout": str(stdout), "stderr": str(stderr)})["pid"]
            command = ForkedCommand(self, pid, [AIRFLOW, *args], stdout, stderr)
        else:
            with open(stdout, "ab") as out, open(stderr, "ab") as err:
                process = subprocess.Popen(
                    [AIRFLOW, *args],
                    env=env,
                    cwd=REPO_ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out if merged else err,
                    start_new_session=True,
                )
            command = ProcessCommand(process, [AIRFLOW, *args], stdout, stderr)
        self._commands.append(command)
        return command

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request to the fork server (started on first use) and its answer."""
        server = self._started()
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(json.dumps(request) + "\n")
        server.stdin.flush()
        return self._answer(server.stdout)

    def _answer(self, replies: IO[str]) -> dict[str, Any]:
        line = replies.readline()
        if not line:
            log = (self._scratch / "server.log").read_text(errors="replace")
            raise RuntimeError(f"the airflow fork server has exited: {log[-3000:]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _started(self) -> subprocess.Popen[str]:
        if self._server is None:
            # A file, not a folder: a child that still wrote (a log, a database) under the
            # server's home instead of its own would fail there instead of passing unseen.
            home = self._scratch / "server-home"
            home.write_text("the airflow fork server's AIRFLOW_HOME: its commands use their own\n")
            with open(self._scratch / "server.log", "w") as log:
                self._server = subprocess.Popen(
                    [sys.executable, str(Path(__file__).with_name("airflow_fork_server.py"))],
                    env=airflow_env(home, home / "dags"),
                    cwd=REPO_ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                )
            assert self._server.stdout is not None
            self._answer(self._server.stdout)  # {"ready": pid} once Airflow is loaded
        return self._server
