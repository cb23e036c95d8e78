"""`make demo`: the sandbox, a local Airflow on SQLite, and ibkr_portfolio_snapshot run for real.

Steps: start the IBKR sandbox on a free loopback port, migrate a local Airflow home
(`.airflow/`), point `AIRFLOW_CONN_IBKR_DEFAULT` at the sandbox, run the DAG with
`airflow dags test`, print what it did, stop the sandbox. Ctrl-C or SIGTERM at any step stops the
sandbox and the running `airflow` command. `IBKR_DEMO_HOME` moves the Airflow home (default
`.airflow/`); the sandbox then keeps its state inside it (`sandbox/`) instead of in `.sandbox/`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ibkr_sandbox.process import RunningSandbox, start_sandbox
from local_airflow import ROOT, airflow_env, hold_interrupts_while_stopping, run_airflow, stop_on_interrupts

MOVED_HOME = os.environ.get("IBKR_DEMO_HOME")
AIRFLOW_HOME = Path(MOVED_HOME) if MOVED_HOME else ROOT / ".airflow"
SANDBOX_STATE = AIRFLOW_HOME / "sandbox" if MOVED_HOME else ROOT / ".sandbox"
OUTPUT_DIR = AIRFLOW_HOME / "output" / "snapshots"


def airflow(args: list[str], env: dict[str, str], log_name: str) -> subprocess.CompletedProcess[str]:
    result = run_airflow(args, env, timeout=900)
    (AIRFLOW_HOME / log_name).write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-5000:])
        raise SystemExit(f"`airflow {' '.join(args)}` failed; full log: {AIRFLOW_HOME / log_name}")
    return result


REBALANCE_CONF = {
    "account_id": "DU2345678",
    "targets": {"AAPL": 0.10, "MSFT": 0.10, "SPY": 0.35, "VTI": 0.15, "BND": 0.20, "VXUS": 0.10},
    "output_dir": str(AIRFLOW_HOME / "output" / "rebalance"),
}


def newest(folder: Path, pattern: str, before: set[str]) -> Path:
    fresh = sorted(p for p in folder.glob(pattern) if p.name not in before)
    if not fresh:
        raise SystemExit(f"the DAG reported success but wrote no {pattern} in {folder}")
    return fresh[-1]


def existing(folder: Path, pattern: str) -> set[str]:
    return {p.name for p in folder.glob(pattern)} if folder.exists() else set()


def shown(path: Path) -> Path:
    """``path`` as the person reads it: relative to the checkout when it is inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def main() -> int:
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    stop_on_interrupts()
    # A new sandbox knows none of the previous run's sessions: start with an empty session cache.
    shutil.rmtree(AIRFLOW_HOME / "ibkr" / "session_cache", ignore_errors=True)
    started = time.monotonic()
    print("1/6 Starting the IBKR sandbox ...", flush=True)
    sandbox: RunningSandbox | None = None
    try:
        sandbox = start_sandbox(SANDBOX_STATE)
        print(f"    sandbox listening on {sandbox.base_url} (state in {shown(SANDBOX_STATE)}/)")
        env = airflow_env(
            AIRFLOW_HOME,
            ROOT / "dags",
            AIRFLOW_CONN_IBKR_DEFAULT=sandbox.connection_json(),
            AIRFLOW_CONN_IBKR_FLEX_DEFAULT=sandbox.flex_connection_json(extra={"poll_interval": 1}),
        )
        print(
            f"2/6 Migrating the local Airflow database ({shown(AIRFLOW_HOME / 'airflow.db')}) ...", flush=True
        )
        airflow(["db", "migrate"], env, "demo_db_migrate.log")

        print("3/6 ibkr_portfolio_snapshot ...", flush=True)
        before = existing(OUTPUT_DIR, "portfolio_snapshot_*.json")
        airflow(
            ["dags", "test", "ibkr_portfolio_snapshot", "-c", json.dumps({"output_dir": str(OUTPUT_DIR)})],
            env,
            "demo_portfolio_snapshot.log",
        )
        snapshot_file = newest(OUTPUT_DIR, "portfolio_snapshot_*.json", before)

        print("4/6 ibkr_rebalance (dry run: IBKR what-if only, nothing placed) ...", flush=True)
        rebalance_dir = Path(REBALANCE_CONF["output_dir"])  # type: ignore[arg-type]
        before = existing(rebalance_dir, "rebalance_*.json")
        airflow(
            ["dags", "test", "ibkr_rebalance", "-c", json.dumps(REBALANCE_CONF)], env, "demo_rebalance.log"
        )
        rebalance_file = newest(rebalance_dir, "rebalance_*.json", before)

        print("5/6 ibkr_flex_report ...", flush=True)
        flex_dir = AIRFLOW_HOME / "output" / "flex"
        before = existing(flex_dir, "flex_*")
        airflow(
            ["dags", "test", "ibkr_flex_report", "-c", json.dumps({"output_dir": str(flex_dir)})],
            env,
            "demo_flex_report.log",
        )
        flex_files = sorted(p for p in flex_dir.glob("flex_*") if p.name not in before)
        stats = sandbox.stats()
    except KeyboardInterrupt:
        print("Interrupted: stopping the sandbox.", flush=True)
        return 130
    finally:
        hold_interrupts_while_stopping()
        if sandbox is not None:
            sandbox.stop()
    print("6/6 Done. The sandbox is stopped.\n")

    snapshot = json.loads(snapshot_file.read_text())
    print("Portfolio snapshot")
    print(f"  {'account':<12} {'net liquidation':>18} {'positions':>10}")
    for account in snapshot["accounts"]:
        net_liq = account["summary"]["netliquidation"]["amount"]
        print(f"  {account['account']['accountId']:<12} {net_liq:>18,.2f} {len(account['positions']):>10}")

    report = json.loads(rebalance_file.read_text())
    plan = report["plan"]
    print(f"\nRebalance plan for {REBALANCE_CONF['account_id']} (dry run: {report['dry_run']})")
    print(
        f"  net liquidation {float(plan['net_liquidation']):,.2f} {plan['currency']}, cash "
        f"{float(plan['cash']):,.2f}; gross exposure {float(plan['gross_leverage_before']):.2f}x -> "
        f"{float(plan['gross_leverage_after']):.2f}x"
    )
    header = ("order", "price", "value", "weight now", "after", "target")
    print("  {:<16} {:>9} {:>12} {:>11} {:>7} {:>7}".format(*header))
    for row in plan["orders"]:
        cells = (row["label"], float(row["price"]), float(row["value"]))
        weights = [float(row[k]) * 100 for k in ("weight_now", "weight_after", "target_weight")]
        print(
            "  {:<16} {:>9.2f} {:>12,.2f} ".format(*cells) + "{:>10.1f}% {:>6.1f}% {:>6.1f}%".format(*weights)
        )
    if not plan["orders"]:
        print("  (every symbol is within its drift band: nothing to trade)")

    print("\nFlex report files")
    for path in flex_files:
        print(f"  {shown(path)}")
    print(
        f"\nIBKR traffic: {stats['tokens_issued']} access token, {stats['sso_sessions']} SSO session, "
        f"{stats['requests_total']} requests, {stats['http_401']} x 401, {stats['http_429']} x 429, "
        f"{stats.get('orders_placed', 0)} orders placed"
    )
    print(f"Snapshot file: {shown(snapshot_file)}")
    print(f"Airflow logs:  {shown(AIRFLOW_HOME)}/demo_*.log")
    print(
        f"Trade journal: {shown(AIRFLOW_HOME / 'ibkr_journal.db')} (connection ibkr_journal; "
        "a dry run journals nothing, approved orders and their fills go here)"
    )
    print(f"Took {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
