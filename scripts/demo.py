"""`make demo`: the sandbox, a local Airflow on SQLite, and ibkr_portfolio_snapshot run for real.

Steps: start the IBKR sandbox on a free loopback port, migrate a local Airflow home
(`.airflow/`), point `AIRFLOW_CONN_IBKR_DEFAULT` at the sandbox, run the DAG with
`airflow dags test`, print what it did, stop the sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ibkr_provider.sandbox.process import start_sandbox

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_HOME = ROOT / ".airflow"
OUTPUT_DIR = AIRFLOW_HOME / "output" / "snapshots"
BIN = Path(sys.executable).parent


def airflow(args: list[str], env: dict[str, str], log_name: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(BIN / "airflow"), *args], env=env, capture_output=True, text=True, check=False
    )
    (AIRFLOW_HOME / log_name).write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-5000:])
        raise SystemExit(f"`airflow {' '.join(args)}` failed; full log: {AIRFLOW_HOME / log_name}")
    return result


def main() -> int:
    AIRFLOW_HOME.mkdir(exist_ok=True)
    # A new sandbox knows none of the previous run's sessions: start with an empty session cache.
    shutil.rmtree(AIRFLOW_HOME / "ibkr" / "session_cache", ignore_errors=True)
    started = time.monotonic()
    print("1/4 Starting the IBKR sandbox ...", flush=True)
    sandbox = start_sandbox(ROOT / ".sandbox")
    try:
        print(f"    sandbox listening on {sandbox.base_url} (state in .sandbox/)")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(
            {
                "AIRFLOW_HOME": str(AIRFLOW_HOME),
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW_CONN_IBKR_DEFAULT": sandbox.connection_json(),
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        print("2/4 Migrating the local Airflow database (.airflow/airflow.db) ...", flush=True)
        airflow(["db", "migrate"], env, "demo_db_migrate.log")
        print("3/4 Running `airflow dags test ibkr_portfolio_snapshot` against the sandbox ...", flush=True)
        before = {p.name for p in OUTPUT_DIR.glob("*.json")} if OUTPUT_DIR.exists() else set()
        conf = json.dumps({"output_dir": str(OUTPUT_DIR)})
        airflow(["dags", "test", "ibkr_portfolio_snapshot", "-c", conf], env, "demo_dags_test.log")
        new = sorted(p for p in OUTPUT_DIR.glob("*.json") if p.name not in before)
        if not new:
            raise SystemExit("the DAG reported success but wrote no snapshot file")
        snapshot = json.loads(new[-1].read_text())
        stats = sandbox.stats()
    finally:
        sandbox.stop()
    print("4/4 Done. The sandbox is stopped.\n")
    print(f"{'account':<12} {'net liquidation':>18} {'positions':>10}")
    for account in snapshot["accounts"]:
        net_liq = account["summary"]["netliquidation"]["amount"]
        print(f"{account['account']['accountId']:<12} {net_liq:>18,.2f} {len(account['positions']):>10}")
    print(
        f"\nIBKR traffic: {stats['tokens_issued']} access token, {stats['sso_sessions']} SSO session, "
        f"{stats['requests_total']} requests, {stats['http_401']} x 401, {stats['http_429']} x 429"
    )
    print(f"Snapshot file: {new[-1].relative_to(ROOT)}")
    print(f"Airflow log:   {(AIRFLOW_HOME / 'demo_dags_test.log').relative_to(ROOT)}")
    print(f"Took {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
