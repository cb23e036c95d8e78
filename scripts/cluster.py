"""`make cluster`: Airflow's CeleryExecutor stack on this machine, sharing one IBKR session.

What the official docker-compose stack runs, as plain processes on loopback ports: PostgreSQL
(the metadata database and Celery's result backend), Redis (the Celery broker, and the IBKR
session cache every host shares), the IBKR sandbox, the api-server, scheduler, dag-processor and
triggerer (one "controller" host), and two Celery workers with their own ``--celery-hostname``
and their own ``AIRFLOW_HOME`` (two "hosts": the file session cache of one is invisible to the
other, so Redis is what they share, as on real machines). Task logs go to one shared folder, as
the compose file's ``./logs`` volume does.

Every host gets the same Fernet key (connections and session records are encrypted with it) and
the same API secrets; ``ibkr_default`` is stored in the metadata database with
``session_cache = redis://.../1``. A dead worker's tasks are failed (and retried) after 10 s
without a heartbeat (``[scheduler] task_instance_heartbeat_timeout``; Airflow's default is 300),
well inside the 30 s lease of the placement lock a killed worker leaves behind, so a retried
placement waits out the rest of that lease before it looks for the order (and adopts it).

Settings: ``IBKR_CLUSTER_PORT`` (the UI, default 8080), ``IBKR_CLUSTER_DIR`` (work directory,
default ``.cluster``, emptied at start), ``IBKR_CLUSTER_DAGS`` (DAG folder, default ``dags/``),
``IBKR_CLUSTER_ADVISOR_SUBACCOUNTS`` (N: the sandbox's advisor login with N sub-accounts, stored
as the connection ``ibkr_advisor``; ``benchmarks/advisor_snapshot.py --cluster`` uses it),
``IBKR_CLUSTER_RESTART=always`` (a process that exits is started again, as docker-compose's
``restart: always`` does). A file dropped in the work directory's ``control/`` named after a
process (``redis``, ``postgres``, ``worker-1``...) or ``sandbox`` restarts it (SIGKILL and start;
the sandbox stops cleanly and keeps IBKR-side state); ``events.jsonl`` records every restart
(``benchmarks/chaos.py`` drives the cluster this way), ``IBKR_DAG_PARSE_SECONDS`` (how often
each DAG file is parsed again; Airflow's 30 s when unset).
``cluster.json`` in the work directory lists the URLs, the admin password and every process id.
Ctrl-C (or SIGTERM) stops everything and removes the database.

Secrets: PostgreSQL (scram-sha-256, no password-less login) and Redis (``requirepass``) get
random passwords; ``cluster.json`` and ``passwords.json`` are mode 0600 in a 0700 work directory.
Every port binds 127.0.0.1, so other users of this machine can reach them, and what they meet is
a password (PostgreSQL, Redis, the UI) or the sandbox, which has no real accounts. The processes'
environments (database and broker URLs with their passwords) are readable only by the same user
and root.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests
from airflow_connections import import_connections
from cluster_processes import Cluster, start_postgres, start_redis
from ibkr_sandbox.process import start_sandbox
from ibkr_sandbox.seed import ADVISOR_CREDENTIAL
from local_airflow import (
    ROOT,
    free_port,
    hold_interrupts_while_stopping,
    parse_interval,
    stop_on_interrupts,
)

from ibkr_provider.client.session.locking import write_private_atomically

BIN = Path(sys.executable).parent
WORKERS = ("worker-1", "worker-2")


def airflow_env(common: dict[str, str], home: Path, **extra: str) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {**common, "AIRFLOW_HOME": str(home), **extra}


def main() -> int:
    port = int(os.environ.get("IBKR_CLUSTER_PORT", "8080"))
    work = Path(os.environ.get("IBKR_CLUSTER_DIR") or ROOT / ".cluster").resolve()
    dags = Path(os.environ.get("IBKR_CLUSTER_DAGS") or ROOT / "dags").resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, mode=0o700)
    (work / "logs").mkdir()
    (work / "control").mkdir()
    cluster = Cluster(work)
    stop_on_interrupts()
    try:
        database = start_postgres(cluster)
        redis = start_redis(cluster)
        # IBKR_CLUSTER_ADVISOR_SUBACCOUNTS=N: the sandbox's advisor login too, as ibkr_advisor
        advisor = int(os.environ.get("IBKR_CLUSTER_ADVISOR_SUBACCOUNTS") or 0)
        extra_args = ["--advisor-subaccounts", str(advisor)] if advisor else []
        # --persist: a restarted sandbox keeps IBKR-side state, as IBKR does (the chaos run)
        cluster.sandbox = sandbox = start_sandbox(work / "sandbox", "--persist", *extra_args)
        url = f"http://127.0.0.1:{port}"
        password = secrets.token_urlsafe(12)
        write_private_atomically(work / "passwords.json", json.dumps({"admin": password}).encode())
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        common = {
            **base,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
            "AIRFLOW__CELERY__BROKER_URL": f"{redis}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
            # the same on every host: Fernet (connections, IBKR session records) and API secrets
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(work / "passwords.json"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(work / "task-logs"),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "10",
            # a task queued in a Redis that restarted is lost with it: queued again after 90 s
            # (Airflow's default waits 600), looked for every 10 s (Airflow's 120 s made that 90
            # to 210 s: a chaos run's retry sat queued for 130 s, 2026-12-05)
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
            # a scheduler started again (after PostgreSQL went away) adopts the tasks the dead one
            # queued once that one is 30 s silent, checking every 10 s (Airflow's default: 300 s,
            # during which a task whose worker also died is not failed and retried)
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
            "IBKR_SANDBOX_URL": sandbox.base_url,
            **parse_interval(),
        }
        controller = airflow_env(common, work / "controller")
        airflow = str(BIN / "airflow")
        migrate = subprocess.run([airflow, "db", "migrate"], env=controller, capture_output=True, text=True)
        if migrate.returncode != 0:
            raise SystemExit(f"airflow db migrate failed:\n{migrate.stderr[-3000:]}")
        ibkr = json.loads(sandbox.connection_json())
        ibkr["extra"]["session_cache"] = f"{redis}/1"
        flex = json.loads(sandbox.flex_connection_json(extra={"poll_interval": 1}))
        # The trade journal: a table in the cluster's PostgreSQL (not touched by `airflow db clean`).
        journal = {"conn_type": "generic", "extra": {"sqlalchemy_url": database}}
        connections = {"ibkr_default": ibkr, "ibkr_flex_default": flex, "ibkr_journal": journal}
        if advisor:
            advisor_conn = json.loads(sandbox.connection_json(credential=ADVISOR_CREDENTIAL))
            advisor_conn["extra"]["session_cache"] = f"{redis}/1"
            connections["ibkr_advisor"] = advisor_conn
        import_connections(airflow, connections, work, controller)
        for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
            cluster.start(component, [airflow, component], controller)
        for name in WORKERS:
            env = airflow_env(common, work / name, IBKR_CLUSTER_HOST=name)
            args = ["celery", "worker", "--celery-hostname", f"{name}@%h", "--skip-serve-logs"]
            cluster.start(name, [airflow, *args], env)

        def api_up() -> bool:
            try:
                return requests.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        everything = tuple(cluster.processes)
        cluster.wait_for("the api-server", api_up, everything)

        def components_healthy() -> bool:
            health = requests.get(f"{url}/api/v2/monitor/health", timeout=5).json()
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            return all((health.get(part) or {}).get("status") == "healthy" for part in parts)

        cluster.wait_for("scheduler, triggerer and dag-processor", components_healthy, everything)
        for name in WORKERS:
            cluster.wait_for(name, lambda name=name: " ready." in cluster.log_of(name), everything)
        write_private_atomically(
            work / "cluster.json",
            json.dumps(
                {
                    "url": url,
                    "password": password,
                    "sandbox_url": sandbox.base_url,
                    "redis_url": redis,
                    "database": database,
                    "pids": {name: process.pid for name, process in cluster.processes.items()},
                    "homes": {name: str(work / name) for name in ("controller", *WORKERS)},
                    "removed_at_stop": [str(path) for path in cluster.cleanups],
                },
                indent=2,
            ).encode(),
        )
        print(f"IBKR sandbox:  {sandbox.base_url}")
        print(f"Airflow UI:    {url}  (user admin)")
        print(f"Password:      {password}")
        print(
            f"CeleryExecutor: PostgreSQL and Redis on 127.0.0.1 with generated passwords "
            f"(in {work / 'cluster.json'}, mode 0600); Redis: broker /0, IBKR session cache /1"
        )
        print(f"Workers:       {', '.join(WORKERS)} (logs in {work / 'logs'})")
        print("Ctrl-C stops the cluster.", flush=True)
        # A worker may die (a host lost: its tasks are retried on the other one); the cluster
        # stops when a process every task depends on exits, unless IBKR_CLUSTER_RESTART=always
        # starts every exited process again (docker-compose's `restart: always`).
        # Files dropped in control/ ask for restarts: see Cluster.serve_requests.
        always = os.environ.get("IBKR_CLUSTER_RESTART") == "always"
        while always or all(p.poll() is None for name, p in cluster.processes.items() if name not in WORKERS):
            cluster.serve_requests()
            if always:
                cluster.restart_exited()
            time.sleep(0.2)
        gone = [name for name, process in cluster.processes.items() if process.poll() is not None]
        print(f"stopping: {', '.join(gone)} exited", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        hold_interrupts_while_stopping()
        print("Stopping the cluster...", flush=True)
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
