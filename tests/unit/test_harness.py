"""The harness carries itself: the start order's durations file follows renames, and the fork
server refuses an Airflow it was not written for."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support import durations
from tests.support.airflow_fork_server import check_airflow_version


def _report(nodeid: str, seconds: float) -> Any:
    return SimpleNamespace(nodeid=nodeid, duration=seconds)


def test_a_run_of_every_tier_drops_tests_it_did_not_see(tmp_path: Path) -> None:
    path = tmp_path / "durations.json"
    path.write_text(json.dumps({"tests/unit/test_a.py::old_name": 9.0, "tests/e2e/test_b.py::kept": 30.0}))
    partial = durations.Recorder()
    partial.measure(_report("tests/unit/test_a.py::new_name", 1.4))
    partial.save(path, tiers=("unit", "e2e"))
    assert durations.load(path) == {
        "tests/unit/test_a.py::old_name": 9.0,
        "tests/e2e/test_b.py::kept": 30.0,
        "tests/unit/test_a.py::new_name": 1.0,
    }
    full = durations.Recorder()
    for nodeid, seconds in [
        ("tests/unit/test_a.py::new_name", 0.2),
        ("tests/e2e/test_b.py::kept@group", 28.6),
    ]:
        full.measure(_report(nodeid, seconds))
        full.measure(_report(nodeid, seconds))  # setup and call add up
    full.save(path, tiers=("unit", "e2e"))
    assert durations.load(path) == {"tests/unit/test_a.py::new_name": 0.0, "tests/e2e/test_b.py::kept": 57.0}


def test_the_cheapest_tests_wait_behind_the_longest() -> None:
    """With two workers, each is handed two units at the start and runs the second only after
    the first: the two cheapest go second, then the rest, longest first."""
    costs = {"up": 220.0, "tiny": 0.1, "cluster": 160.0, "mid": 27.0, "small": 1.0, "zero": 0.0, "short": 5.0}
    assert durations.start_order(costs, workers=2) == [
        "up",
        "cluster",
        "tiny",
        "zero",
        "mid",
        "short",
        "small",
    ]
    assert durations.start_order(costs, workers=1) == [
        "up",
        "cluster",
        "mid",
        "short",
        "small",
        "tiny",
        "zero",
    ]


def test_the_fork_server_refuses_another_airflow() -> None:
    check_airflow_version("3.3.0")
    check_airflow_version("3.3.7rc1")
    with pytest.raises(SystemExit, match=r"written for Airflow 3\.3\.x, this is 3\.4\.0.*FORK_SERVER=off"):
        check_airflow_version("3.4.0")
