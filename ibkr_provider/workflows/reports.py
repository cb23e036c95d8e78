"""The summary a trading run leaves: its plan and what happened, as a JSON file and a log line."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def write_run_summary(
    folder: str, run_id: str, plan: Mapping[str, Any], results: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Write ``rebalance_<run id>.json`` (the plan with IBKR's figures and warnings, and every
    order's result) to ``folder``; return where, how many orders, and whether it was a dry run."""
    dry_run = all(r.get("dry_run") for r in results) if results else True
    report = {"dry_run": dry_run, "plan": dict(plan), "orders": [dict(r) for r in results]}
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"rebalance_{re.sub(r'[^A-Za-z0-9_.-]+', '_', run_id)}.json"
    path.write_text(json.dumps(report, indent=1))
    placed = [r for r in results if r.get("order_id")]
    log.info(
        "Rebalance summary: %d order(s), %d placed, dry run: %s, IBKR warnings: %d; written to %s",
        len(results),
        len(placed),
        dry_run,
        len(plan.get("warnings") or []),
        path,
    )
    return {"path": str(path), "orders": len(results), "placed": len(placed), "dry_run": dry_run}
