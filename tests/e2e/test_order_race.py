"""Four OS processes place orders at one instant, in two accounts of one login, while IBKR asks a
question on every order and takes 0.5 s over each reply.

The orders carry no cOID, so the placement does not read the paced order list first: nothing
but the placement lock orders them. With the lock (the control case replaces it with a no-op)
no question is lost; without it, a new order supersedes an open question ("reply id not found").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ibkr_sandbox.process import RunningSandbox

from tests.support.processes import cache_env, run_workers

PROMPT = {
    "message_id": "o163",
    "text": "The order price exceeds the Percentage constraint of 3%.",
    "when": "always",
}
REPLY_DELAY = 0.5


def _race(sandbox: RunningSandbox, cache: Path, action: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    sandbox.reset()
    sandbox.configure(prompt_rules=[PROMPT])
    sandbox.inject_fault("/v1/api/iserver/reply/*", "delay", count=4, delay=REPLY_DELAY)
    env = {"AIRFLOW_CONN_IBKR_DEFAULT": sandbox.connection_json(), **cache_env(cache)}
    reports = run_workers(4, action, env, allow_errors=True)
    return reports, sandbox.stats()


def test_without_the_placement_lock_questions_are_lost(fresh_sandbox: RunningSandbox, tmp_path: Path) -> None:
    """The control case: the same placements with the lock disabled lose the race."""
    reports, stats = _race(fresh_sandbox, tmp_path / "unlocked", "place_unlocked")
    assert any("reply id not found" in r.get("error", "") for r in reports), reports
    assert stats["questions_superseded"] >= 1


def test_the_placement_lock_serialises_simultaneous_orders(
    fresh_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    reports, stats = _race(fresh_sandbox, tmp_path / "locked", "place")
    assert not [r for r in reports if "error" in r], reports
    assert len({r["order_id"] for r in reports}) == 4 and len({r["pid"] for r in reports}) == 4
    assert stats["orders_placed"] == 4 and stats.get("questions_superseded", 0) == 0
    assert stats["faults_fired"] == 4  # every reply was slow, and none was overtaken
    assert "GET /v1/api/iserver/account/orders" not in stats["paths"]  # no paced order-list read
    # They started together and were placed one after another, each waiting out the slow reply.
    started = [r["started"] for r in reports]
    assert max(started) - min(started) < REPLY_DELAY
    assert max(r["finished"] for r in reports) - min(started) >= 4 * REPLY_DELAY
