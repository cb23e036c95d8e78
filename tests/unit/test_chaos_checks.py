"""The chaos run's outside checks (benchmarks/chaos_checks.py) catch what they are there for: a
second order for one task, an order under a cOID no task owns, a cut or short file, and a failed
run whose log names no cause. Pure logic over files and lists, so each check is shown failing."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.chaos_checks import (
    Files,
    check_flex_files,
    check_orders,
    check_snapshot_files,
    failure_named,
    leftover_partials,
)
from ibkr_provider.workflows.order_guard import order_coid

RUN = "manual__2026-12-05T01:00:00+00:00"


def _order(coid: str, status: str = "Filled") -> dict[str, object]:
    return {"coid": coid, "status": status}


def test_one_order_per_task_instance_passes_and_a_second_or_a_stranger_is_a_duplicate() -> None:
    mine = [order_coid("ibkr_rebalance", "place_order", RUN, i) for i in (0, 1)]
    tasks = [(RUN, 0), (RUN, 1)]
    clean = check_orders([_order(mine[0]), _order(mine[1], "Submitted")], tasks)
    assert clean.duplicates == 0 and clean.filled_coids == {mine[0]}
    assert check_orders([_order(mine[0]), _order(mine[0])], tasks).duplicates == 1
    stranger = check_orders([_order(mine[0]), _order("af-retry-with-a-new-id")], tasks)
    assert stranger.duplicates == 1 and stranger.unexpected == ["af-retry-with-a-new-id"]


def _snapshot(folder: Path, positions: dict[str, int], csv_rows: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    accounts = [
        {"account": {"id": account}, "positions": [{"conid": n} for n in range(count)]}
        for account, count in positions.items()
    ]
    path = folder / "portfolio_snapshot_run.json"
    path.write_text(json.dumps({"accounts": accounts}))
    rows = sum(positions.values()) if csv_rows is None else csv_rows
    (folder / "positions_run.csv").write_text("account_id,conid\n" + "DU1,1\n" * rows)
    return path


def test_a_snapshot_is_whole_only_with_every_position_of_the_book(tmp_path: Path) -> None:
    book = {"DU1": {"positions": 3}, "DU2": {"positions": 1}}
    whole = Files()
    _snapshot(tmp_path / "whole", {"DU1": 3, "DU2": 1})
    check_snapshot_files(tmp_path / "whole", book, whole)
    assert whole.complete == 2 and whole.truncated == []

    bad = Files()
    _snapshot(tmp_path / "short", {"DU1": 2, "DU2": 1})  # a page missing
    _snapshot(tmp_path / "csv", {"DU1": 3, "DU2": 1}, csv_rows=2)  # the CSV cut
    cut = _snapshot(tmp_path / "cut", {"DU1": 3, "DU2": 1})
    cut.write_text(cut.read_text()[:40])  # the JSON cut
    check_snapshot_files(tmp_path, book, bad)
    assert len(bad.truncated) == 3 and bad.complete == 2  # ("whole" again)


def test_a_flex_csv_shorter_than_its_report_is_truncated(tmp_path: Path) -> None:
    xml = (
        "<FlexQueryResponse><FlexStatements count='1'><FlexStatement accountId='DU1'>"
        "<Trades><Trade tradeID='1'/><Trade tradeID='2'/></Trades>"
        "</FlexStatement></FlexStatements></FlexQueryResponse>"
    )
    (tmp_path / "flex_q.xml").write_text(xml)
    (tmp_path / "flex_q_Trades.csv").write_text("tradeID\n1\n2\n")
    files = Files()
    check_flex_files(tmp_path, files)
    assert files.complete == 2 and files.truncated == []
    (tmp_path / "flex_q_Trades.csv").write_text("tradeID\n1\n")
    (tmp_path / "flex_cut.xml").write_text(xml[:50])
    (tmp_path / ".flex_cut.xml.partial-0a1b").write_text(xml[:50])
    files = Files()
    check_flex_files(tmp_path, files)
    assert sorted(Path(p).name for p in files.truncated) == ["flex_cut.xml", "flex_q_Trades.csv"]
    assert [Path(p).name for p in leftover_partials(tmp_path)] == [".flex_cut.xml.partial-0a1b"]


def test_a_failed_run_is_named_by_its_last_failed_tasks_error(tmp_path: Path) -> None:
    folder = tmp_path / "dag_id=d" / f"run_id={RUN}" / "task_id=place_order" / "map_index=1"
    folder.mkdir(parents=True)
    error = {
        "level": "error",
        "event": "Task failed with exception",
        "error_detail": [{"exc_type": "IbkrOrderRefusedError", "exc_value": "IBKR refused the order"}],
    }
    (folder / "attempt=1.log").write_text(json.dumps({"level": "info", "event": "placing"}) + "\n")
    (folder / "attempt=2.log").write_text(json.dumps(error) + "\n")
    tis = [
        {"task_id": "plan", "state": "success", "end_date": "1", "map_index": -1},
        {"task_id": "place_order", "state": "failed", "end_date": "2", "map_index": 1},
        {"task_id": "summary", "state": "upstream_failed", "end_date": None, "map_index": -1},
    ]
    assert (
        failure_named(tmp_path, "d", RUN, tis) == "place_order: IbkrOrderRefusedError: IBKR refused the order"
    )
    (folder / "attempt=2.log").write_text(json.dumps({"level": "info", "event": "killed"}) + "\n")
    assert failure_named(tmp_path, "d", RUN, tis) is None
