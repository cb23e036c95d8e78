"""What a trading run leaves behind: its plan in the task log, and its summary (the plan and what
happened) as a JSON file and a log line."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ibkr_provider.workflows.plan import RebalancePlan

log = logging.getLogger(__name__)


def write_run_summary(
    folder: str,
    run_id: str,
    plan: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    decision: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``rebalance_<run id>.json`` (the plan with IBKR's figures and warnings, the approval
    decision: who, when, which plan, and every order's result) to ``folder``; return where, how
    many orders, whether it was a dry run and the decision."""
    dry_run = all(r.get("dry_run") for r in results) if results else True
    decided = dict(decision or {})
    report = {
        "dry_run": dry_run,
        "decision": decided,
        "plan": dict(plan),
        "orders": [dict(r) for r in results],
    }
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"rebalance_{re.sub(r'[^A-Za-z0-9_.-]+', '_', run_id)}.json"
    path.write_text(json.dumps(report, indent=1))
    placed = [r for r in results if r.get("order_id")]
    log.info(
        "Rebalance summary: %s by %s at %s; %d order(s), %d placed, dry run: %s, IBKR warnings: %d; "
        "written to %s",
        decided.get("decision", "no decision"),
        decided.get("by", "nobody"),
        decided.get("at", "-"),
        len(results),
        len(placed),
        dry_run,
        len(plan.get("warnings") or []),
        path,
    )
    return {
        "path": str(path),
        "orders": len(results),
        "placed": len(placed),
        "dry_run": dry_run,
        "decision": decided.get("decision"),
        "decided_by": decided.get("by"),
    }


def log_plan(plan: RebalancePlan) -> None:
    """The plan in the task log, figures with their currency and thousands separators."""
    funds, exposure, cur = plan.funds, plan.exposure, plan.funds.currency or ""
    nl = funds.net_liquidation
    log.info(
        "Rebalance plan for %s (%s): net liquidation %s %s, cash %s %s; %d order(s); buys %s, sells %s; "
        "gross exposure %.2fx -> %.2fx; untouched holdings %.2f%%",
        plan.account_id,
        "paper" if plan.paper else "live",
        f"{nl:,.2f}",
        cur,
        f"{funds.cash:,.2f}",
        cur,
        len(plan.lines),
        f"{exposure.buys:,.2f}",
        f"{exposure.sells:,.2f}",
        exposure.gross_before / nl,
        exposure.gross_after / nl,
        exposure.untouched_weight * 100,
    )
    for line in plan.lines:
        o, w = line.order, line.whatif
        log.info(
            "  %-16s @ %10s = %14s %s  weight %6.2f%% -> %6.2f%% (target %.2f%%); what-if: commission %s, "
            "initial margin %s, maintenance margin %s, equity with loan after %s%s",
            o.label,
            f"{o.price:,.2f}",
            f"{o.value:,.2f}",
            cur,
            o.weight_now * 100,
            o.weight_after * 100,
            o.target_weight * 100,
            w.get("commission"),
            w.get("initial_margin_change"),
            w.get("maintenance_margin_change"),
            w.get("equity_after"),
            f"; IBKR warns: {w['warning']}" if w.get("warning") else "",
        )
