"""What a chaos run (benchmarks/chaos.py) must leave behind, checked from the outside.

Each check reads only what a person could look at afterwards: the sandbox's order list and book
(IBKR's side), the trade journal in PostgreSQL, the files the DAGs wrote, the sandbox's request
counters and the task logs Airflow kept. None of them trusts what the provider says about itself.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ibkr_provider.flex.report import parse_flex_statement
from ibkr_provider.workflows.order_guard import order_coid

#: A log line that names why a task failed: an exception's type (the provider's typed errors,
#: Airflow's own), as the task log shows it.
_NAMED = re.compile(r"\b(Ibkr\w*Error|\w+(Error|Exception|Timeout))\b")


@dataclass
class Orders:
    """Placements at the sandbox against the place_order task instances that may place them."""

    placed: int = 0
    #: orders beyond the first of one cOID, plus orders of no place_order task instance (a
    #: placement that escaped its cOID)
    duplicates: int = 0
    unexpected: list[str] = field(default_factory=list)
    filled_coids: set[str] = field(default_factory=set)


def check_orders(sandbox_orders: list[dict[str, Any]], place_tasks: list[tuple[str, int]]) -> Orders:
    """``place_tasks``: (run id, map index) of every ibkr_rebalance place_order task instance."""
    expected = {order_coid("ibkr_rebalance", "place_order", run, index) for run, index in place_tasks}
    counts = Counter(str(order["coid"]) for order in sandbox_orders)
    result = Orders(placed=len(sandbox_orders))
    result.duplicates = sum(n - 1 for n in counts.values() if n > 1)
    result.unexpected = sorted(coid for coid in counts if coid not in expected)
    result.duplicates += sum(counts[coid] for coid in result.unexpected)
    result.filled_coids = {str(o["coid"]) for o in sandbox_orders if o["status"] == "Filled"}
    return result


@dataclass
class Journal:
    order_rows: int = 0
    fill_rows: int = 0
    #: rows beyond the first of one order or one fill
    duplicates: int = 0
    #: filled orders (cOIDs) without their order row or without a fill row
    missing: list[str] = field(default_factory=list)


def check_journal(database: str, filled_coids: set[str]) -> Journal:
    """Every order the rebalance placed and IBKR filled is in the trade journal once, with its
    fill, whether its run succeeded or a sibling order failed it."""
    import psycopg2

    url = database.replace("postgresql+psycopg2", "postgresql")
    with contextlib.closing(psycopg2.connect(url)) as db, db.cursor() as cursor:
        cursor.execute("SELECT to_regclass('ibkr_trade_journal')")
        if cursor.fetchone()[0] is None:
            return Journal(missing=sorted(filled_coids))
        # the rebalance's own rows (an event-driven DAG journals the same fills under its own name)
        cursor.execute(
            "SELECT kind, coid, payload FROM ibkr_trade_journal"
            " WHERE dag_id = 'ibkr_rebalance' AND kind IN ('order', 'fill')"
        )
        rows = cursor.fetchall()
    orders = Counter(coid for kind, coid, _ in rows if kind == "order")
    fills = Counter(json.loads(payload).get("execution_id") for kind, _, payload in rows if kind == "fill")
    filled = {coid for kind, coid, _ in rows if kind == "fill"}
    return Journal(
        order_rows=sum(orders.values()),
        fill_rows=sum(fills.values()),
        duplicates=sum(n - 1 for n in orders.values() if n > 1) + sum(n - 1 for n in fills.values() if n > 1),
        missing=sorted(coid for coid in filled_coids if coid not in orders or coid not in filled),
    )


@dataclass
class Files:
    complete: int = 0
    #: files under their final name that are not whole (cut JSON, short CSV, a count that
    #: disagrees with the sandbox's book or with the report they came from)
    truncated: list[str] = field(default_factory=list)
    #: temporary files a killed writer left (never under a final name)
    leftovers: list[str] = field(default_factory=list)


def _csv_rows(path: Path) -> int:
    with path.open(newline="") as stream:
        return max(sum(1 for _ in csv.reader(stream)) - 1, 0)


def check_snapshot_files(folder: Path, book: dict[str, dict[str, Any]], files: Files) -> None:
    """Every snapshot JSON parses whole and holds each account with the positions the sandbox's
    book has; its CSV has one row per position."""
    for path in sorted(folder.rglob("portfolio_snapshot_*.json")):
        try:
            accounts = json.loads(path.read_text())["accounts"]
            short = [
                a["account"]["id"]
                for a in accounts
                if len(a["positions"]) != book[a["account"]["id"]]["positions"]
            ]
        except (ValueError, KeyError, TypeError):
            files.truncated.append(str(path))
            continue
        csv_path = path.with_name(
            path.name.replace("portfolio_snapshot_", "positions_").replace(".json", ".csv")
        )
        rows = sum(len(a["positions"]) for a in accounts)
        if short or not accounts or (csv_path.exists() and _csv_rows(csv_path) != rows):
            files.truncated.append(str(path))
        else:
            files.complete += 1 + csv_path.exists()


def check_flex_files(folder: Path, files: Files) -> None:
    """Every Flex XML parses as a whole statement, and each section's CSV has its rows."""
    for path in sorted(folder.rglob("flex_*.xml")):
        try:
            sections = parse_flex_statement(path.read_bytes())
        except Exception:
            files.truncated.append(str(path))
            continue
        files.complete += 1
        for csv_path in sorted(folder.rglob(f"{path.stem}_*.csv")):
            section = csv_path.stem[len(path.stem) + 1 :]
            if _csv_rows(csv_path) != len(sections.get(section, [])):
                files.truncated.append(str(csv_path))
            else:
                files.complete += 1


def leftover_partials(*folders: Path) -> list[str]:
    return sorted(str(p) for folder in folders for p in folder.rglob(".*.partial-*"))


def failure_named(
    log_folder: Path, dag_id: str, run_id: str, task_instances: list[dict[str, Any]]
) -> str | None:
    """The cause the failed run's last failed task logged (its last attempt), or None when its
    log names none."""
    failed = [t for t in task_instances if t["state"] in ("failed", "upstream_failed")]
    failed = [t for t in failed if t["state"] == "failed"] or failed
    if not failed:
        return None
    last = max(failed, key=lambda t: t.get("end_date") or "")
    folder = log_folder / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={last['task_id']}"
    if last.get("map_index", -1) >= 0:
        folder = folder / f"map_index={last['map_index']}"
    logs = sorted(folder.glob("attempt=*.log"), key=lambda p: int(p.stem.split("=")[1].split(".")[0]))
    if not logs:
        return None
    for line in reversed(logs[-1].read_text(errors="replace").splitlines()):
        cause = _cause_in(line)
        if cause:
            return f"{last['task_id']}: {cause}"
    return None


def _cause_in(line: str) -> str | None:
    """An error line's exception type and message (Airflow 3 writes task logs as JSON lines)."""
    try:
        entry = json.loads(line)
    except ValueError:
        found = _NAMED.search(line) if " ERROR " in line else None
        return found.group(1) if found else None
    if not isinstance(entry, dict) or entry.get("level") != "error":
        return None
    for detail in entry.get("error_detail") or []:
        if isinstance(detail, dict) and detail.get("exc_type"):
            return f"{detail['exc_type']}: {str(detail.get('exc_value', ''))[:300]}"
    found = _NAMED.search(str(entry.get("event", "")))
    return found.group(1) if found else None
