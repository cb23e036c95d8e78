"""The example DAGs: they import cleanly without touching a connection, and run for real."""

from __future__ import annotations

import csv
import datetime
import json
import shutil
import sqlite3
import time
from pathlib import Path
from unittest import mock

import pytest
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrClient, IbkrClientConfig
from ibkr_provider.client.models.orders import OrderSide
from scripts.local_airflow import ROOT as REPO_ROOT
from scripts.local_airflow import airflow_env
from tests.support.airflow_cli import AirflowCli, dag_folder

DAGS = REPO_ROOT / "dags"


def test_dags_import_without_errors_or_connection_lookups() -> None:
    from airflow.dag_processing.dagbag import DagBag

    with mock.patch(
        "airflow.sdk.BaseHook.get_connection", side_effect=AssertionError("lookup at parse")
    ) as lookup:
        bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {
        "ibkr_portfolio_snapshot",
        "ibkr_rebalance",
        "ibkr_dca",
        "ibkr_flex_report",
        "ibkr_risk_monitor",
        "ibkr_on_fill",
        "ibkr_fill",
        "ibkr_drawdown_guard",
    }
    for dag_id in bag.dag_ids:
        dag = bag.dags[dag_id]
        assert dag.doc_md and dag.default_args["retries"] >= 1 and dag.params, dag_id
        assert str(dag.timezone) in ("America/New_York", "Timezone('America/New_York')"), dag_id
    lookup.assert_not_called()
    dag = bag.dags["ibkr_portfolio_snapshot"]
    assert dag is not None and dag.doc_md and dag.default_args["retries"] >= 1
    assert str(dag.timezone) in ("America/New_York", "Timezone('America/New_York')")


def _next_runs(dag_id: str, count: int, start: str) -> list[datetime.datetime]:
    """The DAG's next ``count`` run times from ``start``, as the scheduler computes them: from the
    serialized DAG (a custom timetable serializes only when the provider's plugin registers it)."""
    import pendulum
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    bag = DagBag(dag_folder=str(DAGS / f"{dag_id}.py"))
    timetable = DagSerialization.from_dict(DagSerialization.to_dict(bag.dags[dag_id])).timetable
    restriction = TimeRestriction(earliest=pendulum.parse(start), latest=None, catchup=True)
    runs, last = [], None
    for _ in range(count):
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        assert info is not None and info.run_after is not None
        runs.append(info.run_after.in_timezone("America/New_York"))
        last = info.data_interval
    return runs


def test_the_next_24_runs_of_each_example_dag_fall_on_trading_days_as_documented() -> None:
    """Checked against the exchange calendar itself: the rebalance on each month's first NYSE
    session, DCA on each week's, the risk monitor in session hours only; the cron DAGs on weekdays."""
    import exchange_calendars

    nyse = exchange_calendars.get_calendar("XNYS", start="2026-01-01", end="2029-12-31")
    sessions = {s.date() for s in nyse.sessions_in_range("2026-11-01", "2029-12-31")}

    monthly = _next_runs("ibkr_rebalance", 24, "2026-12-02T00:00:00+00:00")
    assert [r.month for r in monthly] == [(12 + i) % 12 + 1 for i in range(24)]  # one a month, from Jan
    for run in monthly:
        assert run.date() in sessions and (run.hour, run.minute) == (10, 0)
        earlier = [d for d in sessions if (d.year, d.month) == (run.year, run.month) and d < run.date()]
        assert earlier == [], run  # the month's first session
    assert monthly[0].date() == datetime.date(2027, 1, 4)  # Jan 1 2027 (Friday) is a holiday

    weekly = _next_runs("ibkr_dca", 24, "2027-01-01T00:00:00+00:00")
    for run in weekly:
        week = run.date().isocalendar()[:2]
        assert run.date() in sessions and (run.hour, run.minute) == (10, 0)
        assert min(d for d in sessions if d.isocalendar()[:2] == week) == run.date(), run
    assert datetime.date(2027, 1, 19) in {r.date() for r in weekly}  # Tuesday after Martin Luther King Day
    assert len({r.date().isocalendar()[:2] for r in weekly}) == 24

    hourly = _next_runs("ibkr_risk_monitor", 24, "2026-11-25T00:00:00+00:00")
    for run in hourly:
        close = nyse.session_close(run.date().isoformat())
        assert run.date() in sessions and run.minute == 15 and run <= close, run
    days = {r.date() for r in hourly}
    assert datetime.date(2026, 11, 26) not in days  # Thanksgiving
    assert [r.hour for r in hourly if r.date() == datetime.date(2026, 11, 27)] == [10, 11, 12]  # 13:00 close

    for dag_id, (hour, minute) in (("ibkr_portfolio_snapshot", (16, 30)), ("ibkr_flex_report", (6, 0))):
        for run in _next_runs(dag_id, 24, "2026-12-02T00:00:00+00:00"):
            assert run.weekday() < 5 and (run.hour, run.minute) == (hour, minute), (dag_id, run)


@pytest.fixture(scope="module")
def migrated_home(tmp_path_factory: pytest.TempPathFactory, migrated_template: Path) -> Path:
    """One home for this module's dry runs: a copy of the session's migrated database."""
    home = tmp_path_factory.mktemp("airflow-home")
    shutil.copy(migrated_template, home / "airflow.db")
    return home


def test_portfolio_snapshot_runs_under_airflow_dags_test(
    migrated_home: Path, fresh_sandbox: RunningSandbox, tmp_path: Path, airflow_cli: AirflowCli
) -> None:
    out = tmp_path / "snapshots"
    env = airflow_env(
        migrated_home,
        dag_folder(tmp_path, "ibkr_portfolio_snapshot"),
        AIRFLOW_CONN_IBKR_DEFAULT=fresh_sandbox.connection_json(),
    )
    params = json.dumps({"output_dir": str(out)})
    result = airflow_cli.run(["dags", "test", "ibkr_portfolio_snapshot", "-c", params], env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    (json_file,) = out.glob("portfolio_snapshot_*.json")
    snapshot = json.loads(json_file.read_text())
    by_id = {a["account"]["accountId"]: a for a in snapshot["accounts"]}
    assert set(by_id) == {"DU1234567", "DU2345678", "U3456789"}
    assert len(by_id["DU1234567"]["positions"]) == 273  # every page of the 250+ position account
    assert by_id["DU1234567"]["summary"]["netliquidation"]["amount"] > 0
    assert "BASE" in by_id["DU2345678"]["ledger"]
    (csv_file,) = out.glob("positions_*.csv")
    rows = list(csv.DictReader(csv_file.open()))
    assert len(rows) == 273 + 6 + 3
    assert {r["account_id"] for r in rows} == set(by_id)

    # The Asset event is in Airflow's database, with the files and figures in its extra.
    with sqlite3.connect(migrated_home / "airflow.db") as db:
        events = db.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.name = ?",
            ("ibkr_portfolio_snapshot",),
        ).fetchall()
    assert len(events) == 1
    extra = json.loads(events[0][0])
    assert sorted(extra["files"]) == sorted([f"file://{json_file}", f"file://{csv_file}"])
    assert extra["accounts"]["DU1234567"]["positions"] == 273


def test_rebalance_dry_run_plans_and_previews_without_placing(
    migrated_home: Path, fresh_sandbox: RunningSandbox, tmp_path: Path, airflow_cli: AirflowCli
) -> None:
    out = tmp_path / "rebalance"
    env = airflow_env(
        migrated_home,
        dag_folder(tmp_path, "ibkr_rebalance"),
        AIRFLOW_CONN_IBKR_DEFAULT=fresh_sandbox.connection_json(),
    )
    conf = {
        "account_id": "DU2345678",
        "targets": {"AAPL": 0.1, "MSFT": 0.1, "SPY": 0.35, "VTI": 0.15, "BND": 0.2, "VXUS": 0.1},
        "output_dir": str(out),
    }
    result = airflow_cli.run(["dags", "test", "ibkr_rebalance", "-c", json.dumps(conf)], env, timeout=400)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (summary_file,) = out.glob("rebalance_*.json")
    report = json.loads(summary_file.read_text())
    plan = report["plan"]
    assert report["dry_run"] is True and plan["orders"] and plan["paper"] is True
    assert len(report["orders"]) == len(plan["orders"])
    assert all(o["dry_run"] and "order_id" not in o and o["whatif"]["amount"] > 0 for o in report["orders"])
    # IBKR's what-if of every order is in the plan, before any order task ran
    assert all(o["whatif"]["initial_margin_change"] is not None for o in plan["orders"])
    assert float(plan["gross_leverage_after"]) <= 1.0 and plan["untouched_weight"] == "0.0000"
    stats = fresh_sandbox.stats()
    assert stats.get("orders_placed", 0) == 0 and stats["whatif_requests"] == 2 * len(plan["orders"])
    output = result.stdout + result.stderr
    assert "XCom not found" not in output and "[error" not in output  # a green run logs no error
    assert "Skipping masking for a secret" not in output
    labels = {o["label"] for o in plan["orders"]}
    assert labels and all(f"DRY RUN (nothing placed): {label} (conid" in output for label in labels)
    with sqlite3.connect(migrated_home / "airflow.db") as db:
        shown = db.execute(
            "SELECT rendered_map_index FROM task_instance WHERE dag_id = 'ibkr_rebalance' "
            "AND task_id = 'place_order'"
        ).fetchall()
    assert {row[0] for row in shown} == labels  # the UI lists "BUY 26 AAPL", not map index 0


def test_rebalance_places_limit_orders_and_the_deferrable_wait_sees_them_fill(
    fresh_airflow_home: Path, fresh_sandbox: RunningSandbox, tmp_path: Path, airflow_cli: AirflowCli
) -> None:
    """Limit orders 1 % away from the market rest; a deferrable sensor's trigger polls them until
    the test moves the prices through the limits, and the run ends with every order filled."""
    out = tmp_path / "rebalance"
    env = airflow_env(
        fresh_airflow_home,
        dag_folder(tmp_path, "ibkr_rebalance"),
        AIRFLOW_CONN_IBKR_DEFAULT=fresh_sandbox.connection_json(),
        IBKR_REBALANCE_FILL_POLL_SECONDS="1",
        # The test's own client shares the run's session (a second login would compete with it),
        # so the cache is a directory both use, unencrypted for this test.
        AIRFLOW__IBKR__SESSION_CACHE_DIR=str(tmp_path / "cache"),
        AIRFLOW__CORE__FERNET_KEY="",
    )
    conf = {
        "account_id": "DU2345678",
        "targets": {"SPY": 0.1, "BND": 0.1},  # the other holdings stay: 77 % + 20 % fits
        "dry_run": False,
        "auto_approve_paper": True,  # a paper account; `dags test` has no person to approve
        "order_type": "LMT",
        "limit_offset": 0.01,
        "output_dir": str(out),
    }
    run = airflow_cli.start(["dags", "test", "ibkr_rebalance", "-c", json.dumps(conf)], env)
    client = IbkrClient(
        IbkrClientConfig.from_mapping(
            fresh_sandbox.client_config_values(session_cache=f"file://{tmp_path / 'cache'}")
        )
    )
    try:
        deadline = time.monotonic() + 240
        while True:  # until a trigger follows a resting order on the websocket
            assert run.poll() is None and time.monotonic() < deadline, "the orders were never waited for"
            if fresh_sandbox.stats().get("ws_open", 0) >= 1:
                break
            time.sleep(0.5)
        resting = client.orders.live_orders()
        assert resting and all(o.status.value == "Submitted" for o in resting)
        for order in resting:  # move each price through its limit
            limit = float(order.raw["price"])
            fresh_sandbox.set_price(
                order.conid or 0, round(limit * (0.999 if order.side == OrderSide.BUY else 1.001), 2)
            )
        output, _ = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        client.close()
    assert run.returncode == 0, output[-4000:]
    # the waits were handed to the trigger (deferred: only the trigger follows the websocket),
    # not poked by the sensor in a worker slot (which logs "IBKR order ... is Submitted")
    assert "is Submitted; following it on IBKR's websocket (connected)" in output
    report = json.loads(next(out.glob("rebalance_*.json")).read_text())
    assert report["dry_run"] is False and report["orders"]
    assert all(o["status"] == "Submitted" for o in report["orders"])  # resting when placed
    with sqlite3.connect(fresh_airflow_home / "airflow.db") as db:
        waits = db.execute(
            "SELECT state FROM task_instance WHERE dag_id = 'ibkr_rebalance' AND task_id = 'wait_for_fill'"
        ).fetchall()
    assert waits and {w[0] for w in waits} == {"success"} and len(waits) == len(report["orders"])
    assert fresh_sandbox.stats()["orders_placed"] == len(report["orders"]) == len(report["plan"]["orders"])
    # The trade journal (ibkr_journal: SQLite in the Airflow home) holds the plan, the decision,
    # every order, the state it ended in and its fills with IBKR's commission.
    with sqlite3.connect(fresh_airflow_home / "ibkr_journal.db") as db:
        rows = db.execute(
            "SELECT kind, actor, coid, quantity, price, commission FROM ibkr_trade_journal"
        ).fetchall()
    kinds = [row[0] for row in rows]
    orders = len(report["orders"])
    assert kinds.count("plan") == 1 and kinds.count("decision") == 1
    assert kinds.count("order") == kinds.count("status") == kinds.count("fill") == orders
    assert {row[1] for row in rows if row[0] == "decision"} == {"auto_approve_paper"}
    fills = [row for row in rows if row[0] == "fill"]
    placed = {o["coid"] for o in report["orders"]}
    assert {row[2] for row in fills} == placed and all(row[5] == "1.00" and row[4] for row in fills)
    with sqlite3.connect(fresh_airflow_home / "airflow.db") as db:
        (extra,) = db.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE a.name = 'ibkr_trade_journal'"
        ).fetchone()
    announced = json.loads(extra)  # the Asset event downstream DAGs are scheduled on
    # the README's "what did we trade this month, who approved it, what did it cost" query
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    query = readme.split("who approved it, what did it cost", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    with sqlite3.connect(fresh_airflow_home / "ibkr_journal.db") as db:
        month = db.execute(query).fetchall()
    assert len(month) == orders and {row[8] for row in month} == {"auto_approve_paper"}, month
    assert all(row[6] == "1.00" and row[7] > 0 for row in month)
    assert announced["rows"] == len(rows) and announced["by_kind"]["fill"] == orders


def test_an_order_placed_beside_a_refused_one_is_still_followed_and_journaled(
    fresh_airflow_home: Path, fresh_sandbox: RunningSandbox, tmp_path: Path, airflow_cli: AirflowCli
) -> None:
    """IBKR asks an unknown question about the larger of two orders (refused: nothing placed for
    it); the other is placed. The run fails, but the placed order is followed to its fill and
    the journal holds it with its fill (the chaos run found a filled order without one)."""
    fresh_sandbox.configure(
        prompt_rules=[
            {"message_id": "o999", "text": "Unknown question", "when": "notional_over", "threshold": 10_000}
        ]
    )
    env = airflow_env(
        fresh_airflow_home,
        dag_folder(tmp_path, "ibkr_rebalance"),
        AIRFLOW_CONN_IBKR_DEFAULT=fresh_sandbox.connection_json(),
        IBKR_REBALANCE_FILL_POLL_SECONDS="1",
    )
    conf = {
        "account_id": "DU2345678",
        "targets": {"SPY": 0.1, "BND": 0.06},  # buy about 16k of SPY (asked about) and 6k of BND
        "dry_run": False,
        "auto_approve_paper": True,
        "output_dir": str(tmp_path / "rebalance"),
    }
    result = airflow_cli.run(["dags", "test", "ibkr_rebalance", "-c", json.dumps(conf)], env, timeout=400)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "o999" in output, output[-4000:]
    (placed,) = fresh_sandbox.orders()
    assert placed["status"] == "Filled"
    with sqlite3.connect(fresh_airflow_home / "airflow.db") as db:
        waits = db.execute(
            "SELECT state FROM task_instance WHERE dag_id = 'ibkr_rebalance' AND task_id = 'wait_for_fill'"
        ).fetchall()
    assert [w[0] for w in waits] == ["success"]
    with sqlite3.connect(fresh_airflow_home / "ibkr_journal.db") as db:
        rows = db.execute(
            "SELECT kind, coid FROM ibkr_trade_journal WHERE kind IN ('order', 'fill')"
        ).fetchall()
    assert sorted(rows) == [("fill", placed["coid"]), ("order", placed["coid"])], rows


def test_dca_dry_run_previews_cash_quantity_orders(
    migrated_home: Path, fresh_sandbox: RunningSandbox, tmp_path: Path, airflow_cli: AirflowCli
) -> None:
    env = airflow_env(
        migrated_home,
        dag_folder(tmp_path, "ibkr_dca"),
        AIRFLOW_CONN_IBKR_DEFAULT=fresh_sandbox.connection_json(),
    )
    result = airflow_cli.run(["dags", "test", "ibkr_dca", "-c", json.dumps({"account_id": "DU2345678"})], env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    stats = fresh_sandbox.stats()
    # each purchase previewed twice: in the plan (for the approver) and by its dry-run task
    assert stats["whatif_requests"] == 4 and stats.get("orders_placed", 0) == 0


def test_dca_is_skipped_with_a_clear_line_when_funds_are_short(
    migrated_home: Path, fresh_sandbox: RunningSandbox, tmp_path: Path, airflow_cli: AirflowCli
) -> None:
    env = airflow_env(
        migrated_home,
        dag_folder(tmp_path, "ibkr_dca"),
        AIRFLOW_CONN_IBKR_DEFAULT=fresh_sandbox.connection_json(),
    )
    conf = {"account_id": "DU2345678", "amounts": {"VTI": 5_000_000}, "dry_run": False}
    result = airflow_cli.run(["dags", "test", "ibkr_dca", "-c", json.dumps(conf)], env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "skipping DCA for DU2345678: 5,000,000.00 USD needed" in output and "short by" in output
    assert fresh_sandbox.stats().get("whatif_requests", 0) == 0


def test_risk_monitor_passes_then_fails_with_a_readable_breach(
    migrated_home: Path, fresh_sandbox: RunningSandbox, tmp_path: Path, airflow_cli: AirflowCli
) -> None:
    env = airflow_env(
        migrated_home,
        dag_folder(tmp_path, "ibkr_risk_monitor"),
        AIRFLOW_CONN_IBKR_DEFAULT=fresh_sandbox.connection_json(),
    )
    ok = airflow_cli.run(["dags", "test", "ibkr_risk_monitor"], env)
    assert ok.returncode == 0, (ok.stdout + ok.stderr)[-4000:]
    strict = {"accounts": ["DU2345678"], "min_cushion": 0.99, "min_excess_liquidity": 10_000_000}
    failed = airflow_cli.run(["dags", "test", "ibkr_risk_monitor", "-c", json.dumps(strict)], env)
    output = failed.stdout + failed.stderr
    assert "IBKR risk limits breached" in output
    assert "DU2345678: margin cushion" in output and "DU2345678: excess liquidity" in output
    assert "state=failed" in output or failed.returncode != 0
