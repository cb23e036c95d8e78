"""`make up`: the IBKR sandbox and `airflow standalone`, for browsing and triggering the DAGs.

Airflow runs from `.airflow/` (SQLite, LocalExecutor, parallelism 4 for small machines, `[core]
test_connection = Enabled`). The `ibkr_default` and `ibkr_flex_default` connections are stored in
Airflow's database (so the UI lists them and its Test button works), pointing at the sandbox; so
are ``ibkr_consumer`` and ``ibkr_oauth2_app``, the sandbox's third-party consumer (OAuth 1.0a) and
app (OAuth 2.0 authorization code) profiles for Admin > Connect IBKR. Ctrl-C stops Airflow and the
sandbox. `IBKR_UP_PORT` (default 8080) and `IBKR_UP_HOME` (default `.airflow`) move the UI port
and the Airflow home.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests
from airflow_connections import import_connections
from ibkr_sandbox.process import RunningSandbox, start_sandbox
from local_airflow import (
    AIRFLOW,
    ROOT,
    airflow_env,
    hold_interrupts_while_stopping,
    run_airflow,
    stop_on_interrupts,
    stop_process_group,
    wait_until,
)

AIRFLOW_HOME = Path(os.environ.get("IBKR_UP_HOME") or ROOT / ".airflow")
PORT = int(os.environ.get("IBKR_UP_PORT", "8080"))


def airflow(args: list[str], env: dict[str, str]) -> None:
    result = run_airflow(args, env, timeout=900)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-2000:] + result.stderr[-3000:])
        raise SystemExit(f"`airflow {args[0]} {args[1] if len(args) > 1 else ''}` failed")


def preset_connections(sandbox: RunningSandbox, env: dict[str, str]) -> None:
    """The three sandbox connections, stored in Airflow's database."""
    conns = {
        "ibkr_default": json.loads(sandbox.connection_json()),
        "ibkr_flex_default": json.loads(sandbox.flex_connection_json(extra={"poll_interval": 1})),
        "ibkr_consumer": json.loads(sandbox.consumer_profile_json()),
        "ibkr_oauth2_app": json.loads(sandbox.oauth2_profile_json()),
    }
    import_connections(AIRFLOW, conns, AIRFLOW_HOME, env)


def main() -> int:
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    stop_on_interrupts()
    sandbox: RunningSandbox | None = None
    standalone: subprocess.Popen[bytes] | None = None
    try:
        # Inside the home: the sandbox keeps keys and tokens, which belong with the Airflow they serve
        sandbox = start_sandbox(AIRFLOW_HOME / "sandbox")
        env = airflow_env(
            AIRFLOW_HOME,
            ROOT / "dags",
            AIRFLOW__CORE__PARALLELISM="4",
            # A task's supervisor can notice that its task process exited only at its next
            # heartbeat wake-up (5 s by default): 6 of 28 tasks in make up's test ended up to 5 s late
            AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL="1",
            AIRFLOW__CORE__TEST_CONNECTION="Enabled",
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(PORT),
            AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{PORT}",
            # a second person, to see that Connect IBKR keeps each user's connections apart
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin,trader2:admin",
        )
        airflow(["db", "migrate"], env)
        preset_connections(sandbox, env)
        log = open(AIRFLOW_HOME / "standalone.log", "ab")  # noqa: SIM115 - handed to the child
        standalone = subprocess.Popen(
            [AIRFLOW, "standalone"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{PORT}"

        def serving() -> bool:
            try:
                return requests.get(f"{url}/api/v2/version", timeout=2).status_code < 500
            except requests.RequestException:
                return False

        try:
            wait_until("airflow standalone", serving, seconds=420, processes=[standalone], interval=1)
        except RuntimeError as exc:
            raise SystemExit(f"{exc}; see {AIRFLOW_HOME / 'standalone.log'}") from None
        passwords = AIRFLOW_HOME / "simple_auth_manager_passwords.json.generated"
        print(f"IBKR sandbox:  {sandbox.base_url}")
        print(f"Airflow UI:    {url}  (user admin)")
        if passwords.exists():
            generated = json.loads(passwords.read_text())
            print(f"Password:      {generated.get('admin')}  (from {passwords}; user trader2 too)")
        print(
            "Connections ibkr_default and ibkr_flex_default point at the sandbox; Admin > Connections > Test."
        )
        print(f"Trade journal: {AIRFLOW_HOME / 'ibkr_journal.db'} (connection ibkr_journal)")
        print(
            "Admin > Connect IBKR: profiles ibkr_consumer (OAuth 1.0a) and ibkr_oauth2_app (OAuth 2.0); "
            "log in at the sandbox as sandboxuser or sandboxuser2 / sandbox-password."
        )
        print("Ctrl-C stops Airflow and the sandbox.", flush=True)
        standalone.wait()
    except KeyboardInterrupt:
        pass
    finally:
        hold_interrupts_while_stopping()
        if standalone is not None:
            print("Stopping Airflow and the sandbox (at most a minute)...", flush=True)
            # standalone's own shutdown (SIGINT, as Ctrl-C in its terminal): SIGTERM to the group
            # ended standalone first, and a scheduler whose log pipe it had closed ran on
            stop_process_group(standalone, first=signal.SIGINT, seconds=40)
        if sandbox is not None:
            sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
