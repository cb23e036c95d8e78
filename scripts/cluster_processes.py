"""The processes of `make cluster` (scripts/cluster.py): a supervisor that starts, restarts on
request and stops them, and the two services Airflow's side needs first: a throwaway PostgreSQL
and a Redis, each on a free loopback port behind a random password."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ibkr_sandbox.process import RunningSandbox
from local_airflow import answers, free_port, wait_until

from ibkr_provider.client.session.locking import write_private_atomically

#: How long a component may take to be ready (a loaded two-core machine has taken minutes).
BOOT_SECONDS = 600.0


def postgres_binary(name: str) -> str:
    """``initdb`` and ``postgres`` from PATH or Debian's versioned directory (not on PATH)."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None
    )
    if found is None:
        raise SystemExit(f"{name} not found: `make cluster` installs PostgreSQL (apt-get install postgresql)")
    return found


@dataclass
class Cluster:
    """The processes of the cluster; :meth:`stop` ends them in reverse order of start."""

    work: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: list[IO[bytes]] = field(default_factory=list)
    cleanups: list[Path] = field(default_factory=list)
    sandbox: RunningSandbox | None = None
    #: How each process was started (for :meth:`crash_and_restart`).
    commands: dict[str, tuple[list[str], dict[str, str] | None]] = field(default_factory=dict)
    #: When each process was last started (time.monotonic()).
    started_at: dict[str, float] = field(default_factory=dict)

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self.commands[name] = (args, env)
        self.started_at[name] = time.monotonic()
        log = open(self.work / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self.logs.append(log)
        process = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.work, start_new_session=True
        )
        self.processes[name] = process
        return process

    def crash_and_restart(self, name: str) -> subprocess.Popen[bytes]:
        """SIGKILL ``name`` (and its process group), as when its host dies, then start it again
        with the same command and environment."""
        old = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(old.pid, signal.SIGKILL)
        old.wait(timeout=30)
        args, env = self.commands[name]
        return self.start(name, args, env)

    def event(self, what: str, name: str, **details: Any) -> None:
        """Append one line to ``events.jsonl`` (what was restarted, when): the chaos run's record."""
        line = json.dumps({"at": time.time(), "what": what, "name": name, **details})
        with open(self.work / "events.jsonl", "a") as events:
            events.write(line + "\n")
        print(f"{what}: {name} {details or ''}".rstrip(), flush=True)

    def serve_requests(self) -> None:
        """Act on the files dropped in ``control/``: a file named after a process (``redis``,
        ``postgres``, ``worker-1``, ``scheduler``...) kills it with SIGKILL and starts it again;
        ``sandbox`` stops the sandbox and starts it again on its port (``--persist``: IBKR-side
        state survives). Each is recorded in ``events.jsonl`` and the file removed."""
        control = self.work / "control"
        for request in sorted(control.glob("*")) if control.exists() else []:
            name = request.name
            request.unlink()
            if name == "sandbox" and self.sandbox is not None:
                self.sandbox = self.sandbox.restart()
                self.event("restarted", name, pid=self.sandbox.process.pid)
            elif name in self.processes:
                self.event("restarted", name, pid=self.crash_and_restart(name).pid)
            else:
                self.event("unknown request", name)

    def restart_exited(self) -> None:
        """Start again every process that exited (``IBKR_CLUSTER_RESTART=always``), at most once
        every 2 s each (PostgreSQL refuses to start while the backends of a killed one linger)."""
        for name, process in list(self.processes.items()):
            if process.poll() is not None and time.monotonic() - self.started_at.get(name, 0.0) > 2:
                args, env = self.commands[name]
                pid = self.start(name, args, env).pid
                self.event("exited and started again", name, code=process.returncode, pid=pid)

    def log_of(self, name: str) -> str:
        return (self.work / "logs" / f"{name}.log").read_text(errors="replace")

    def wait_for(self, what: str, ready: Any, names: tuple[str, ...], seconds: float = BOOT_SECONDS) -> None:
        """Poll ``ready()`` until true; a process of ``names`` that exits first is an error."""
        try:
            wait_until(what, ready, seconds=seconds, processes=[self.processes[name] for name in names])
        except RuntimeError as exc:
            tails = "".join(
                f"\n{name}:\n{self.log_of(name)[-3000:]}"
                for name in names
                if self.processes[name].poll() is not None
            )
            raise SystemExit(f"{exc} (logs in {self.work / 'logs'}){tails}") from None

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        for process in self.processes.values():  # children a process left in its group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        if self.sandbox is not None:
            self.sandbox.stop()
        for log in self.logs:
            log.close()
        for path in self.cleanups:
            shutil.rmtree(path, ignore_errors=True)


def start_postgres(cluster: Cluster) -> str:
    """A throwaway PostgreSQL on a free loopback port, with a random password (scram-sha-256 for
    every connection, none without it); returns its SQLAlchemy URL.

    PostgreSQL refuses to run as root, so as root it runs as Debian's ``postgres`` user from a
    data directory in /tmp that user can reach."""
    as_root = os.geteuid() == 0
    if as_root:
        data = Path(tempfile.mkdtemp(prefix="ibkr-cluster-pg-"))
        cluster.cleanups.append(data)
        prefix = ["runuser", "-u", "postgres", "--"]
    else:
        data = cluster.work / "postgres"
        data.mkdir(mode=0o700)
        prefix = []
    password = secrets.token_urlsafe(24)
    pwfile = data / "pwfile"  # initdb reads it; deleted at once
    write_private_atomically(pwfile, password.encode())
    if as_root:
        shutil.chown(pwfile, "postgres", "postgres")
        shutil.chown(data, "postgres", "postgres")
    initdb = subprocess.run(
        [
            *prefix,
            postgres_binary("initdb"),
            "-D",
            str(data / "db"),
            "-U",
            "airflow",
            "-A",
            "scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    pwfile.unlink()
    data = data / "db"
    if initdb.returncode != 0:
        raise SystemExit(f"initdb failed:\n{initdb.stdout[-2000:]}{initdb.stderr[-2000:]}")
    port = free_port()
    # No fsync: a database thrown away at the end, and a killed PostgreSQL (not a crashed machine)
    # keeps what it handed to the OS. Commits stay synchronous: off, a commit answered up to
    # 0.6 s before a kill is lost (the chaos run lost a DAG run it had just triggered that way).
    settings = ["fsync=off", "full_page_writes=off", "max_connections=300"]
    cluster.start(
        "postgres",
        [
            *prefix,
            postgres_binary("postgres"),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(data),
        ]
        + [arg for setting in settings for arg in ("-c", setting)],
    )
    import psycopg2

    login = {"host": "127.0.0.1", "port": port, "user": "airflow", "password": password}

    def accepting() -> bool:
        try:
            psycopg2.connect(**login, dbname="postgres").close()
        except psycopg2.OperationalError:
            return False
        return True

    cluster.wait_for("PostgreSQL", accepting, ("postgres",), seconds=60)
    admin = psycopg2.connect(**login, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("CREATE DATABASE airflow")
    admin.close()
    return f"postgresql+psycopg2://airflow:{password}@127.0.0.1:{port}/airflow"


def start_redis(cluster: Cluster) -> str:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise SystemExit("redis-server not found: `make cluster` installs it (apt-get install redis-server)")
    port = free_port()
    password = secrets.token_hex(24)  # hex: safe in a URL and on Redis's command line
    (cluster.work / "redis").mkdir(mode=0o700)
    config = cluster.work / "redis" / "redis.conf"  # the password is not on the command line
    write_private_atomically(config, f"requirepass {password}\n".encode())
    args = [str(config), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    cluster.start("redis", [binary, *args, "--dir", str(cluster.work / "redis")])

    def answering() -> bool:
        return answers(port, f"AUTH {password}\r\nPING\r\n".encode(), b"+PONG")

    cluster.wait_for("Redis", answering, ("redis",), seconds=30)
    return f"redis://:{password}@127.0.0.1:{port}"
