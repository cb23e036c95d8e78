"""Test set-up: an isolated AIRFLOW_HOME and real sandbox servers on free loopback ports."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Must happen before anything imports airflow.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="ibkr-airflow-home-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parent.parent / "dags")

import pytest  # noqa: E402

from ibkr_provider.sandbox.process import RunningSandbox, start_sandbox  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """One OAuth 2.0 sandbox for the session; tests that count requests call ``reset()``."""
    running = start_sandbox(tmp_path_factory.mktemp("sandbox"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def fresh_sandbox(sandbox: RunningSandbox) -> RunningSandbox:
    """The session sandbox with seeded state, sessions and counters restored."""
    sandbox.reset()
    return sandbox


@pytest.fixture(scope="session")
def gateway_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """A sandbox in Client Portal Gateway mode (TLS with its own CA, no auth)."""
    running = start_sandbox(tmp_path_factory.mktemp("gateway"), gateway=True)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def airflow_home() -> Path:
    return Path(_AIRFLOW_HOME)
