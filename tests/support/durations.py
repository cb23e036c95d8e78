"""The recorded test durations the suite's start order comes from (tests/conftest.py), and that
order (:func:`start_order`).

Each run adds up every test's setup, call and teardown time as the reports arrive (in the xdist
controller, or in the single process), and at the end rewrites ``tests/durations.json`` with
what it measured, in whole seconds (so a run changes the file only where a test's time really
moved). A run of every tier also drops the tests it did not see: a renamed or deleted test
leaves the file, and the new name is measured from its first run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

#: pytest-xdist's loadgroup appends ``@<group>`` to the ids of grouped tests.
_GROUP_SUFFIX = re.compile(r"@[\w.-]+$")


def plain_id(nodeid: str) -> str:
    return _GROUP_SUFFIX.sub("", nodeid)


def load(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


class Recorder:
    """One run's measurements."""

    def __init__(self) -> None:
        self.measured: dict[str, float] = {}
        self.tiers_seen: set[str] = set()

    def measure(self, report: pytest.TestReport) -> None:
        nodeid = plain_id(report.nodeid)
        self.measured[nodeid] = self.measured.get(nodeid, 0.0) + report.duration
        parts = nodeid.split("/")
        if len(parts) > 2 and parts[0] == "tests":
            self.tiers_seen.add(parts[1])

    def save(self, path: Path, *, tiers: Iterable[str]) -> None:
        """Merge this run's measurements into ``path`` (all of it for a run of every tier)."""
        if not self.measured:
            return
        recorded = load(path)
        if set(tiers) <= self.tiers_seen:
            recorded = {k: v for k, v in recorded.items() if k in self.measured}
        recorded.update({k: float(round(v)) for k, v in self.measured.items()})
        text = json.dumps(dict(sorted(recorded.items())), indent=0) + "\n"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def start_order(costs: dict[str, float], workers: int) -> list[str]:
    """The order in which xdist hands out ``costs``' units (a test, or an xdist group: its tests
    together): the longest first, so that none runs alone at the end, except that with
    ``workers`` xdist workers the ``workers`` cheapest come right after the first ``workers``.

    Why: a worker runs a test only once it holds the next one (pytest's teardown of a test needs
    the next item), so at the start the controller hands each worker two units (xdist's
    loadscope: "at least two work units"), and the second waits until the first has finished.
    Ranked by cost alone, that second unit was the fifth longest test: behind `make up`'s 220-s
    test, a 27-s test waited out the whole run and ended the suite 27 s late. Ties keep the
    order of ``costs``.
    """
    ranked = sorted(costs, key=lambda unit: -costs[unit])
    if workers < 2 or len(ranked) <= 2 * workers:
        return ranked
    return ranked[:workers] + ranked[-workers:] + ranked[workers:-workers]
