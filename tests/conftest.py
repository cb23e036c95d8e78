"""Test set-up: an isolated AIRFLOW_HOME and real sandbox servers on free loopback ports.

Tiers (a marker each, from the folder): ``tests/unit`` (no subprocess, no socket),
``tests/integration`` (the client, hooks and operators against sandbox servers over HTTP),
``tests/e2e`` (the Airflow CLI, executors, several processes, the browser). Helpers live in
``tests/support``. ``make test-fast`` runs the first two, ``make test`` all three.

Test modules import the Airflow side (hooks, operators, sensors, triggers, the plugin) inside the
tests that use it: every xdist worker imports every test module before its first test, and
Airflow's import costs about 3 s of CPU there (tests/e2e/test_provider.py keeps it so).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

# Must happen before anything imports airflow.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="ibkr-airflow-home-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parent.parent / "dags")
# A real Fernet key, so the session cache is encrypted at rest as in a real deployment.
os.environ["AIRFLOW__CORE__FERNET_KEY"] = "kPqxH3nH7r6fY0h0lJ6y8QkB6m3pYk1tq1bD3a9yV2E="

import pytest  # noqa: E402
from ibkr_sandbox.process import RunningSandbox, start_sandbox  # noqa: E402

from ibkr_provider.client import IbkrClient, IbkrClientConfig  # noqa: E402
from tests.support.airflow_cli import AirflowCli  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


TIERS = ("unit", "integration", "e2e")


#: The order tests start in. pytest-xdist hands tests to its workers in collection order, one as
#: each finishes (``--no-loadscope-reorder`` keeps it from moving groups ahead). The two longest
#: (and heaviest) start at once, so neither runs alone at the end; the unit and integration tiers,
#: which mostly wait on IBKR's pacing, come next, on the third worker while those two run, so
#: their waits leave the CPU to them, longest first (a long wait then overlaps short tests' CPU
#: instead of ending the run); then the rest of the e2e tier as ``E2E_LONGEST`` says.
#: ``make test`` prints the slowest tests.
FIRST = ("tests/e2e/test_make_up.py::", "tests/e2e/test_celery_cluster.py::")
#: Unit and integration tests that take longest, mostly waiting: IBKR's 1-per-5-s pacing of the
#: order list and of ``/portfolio/accounts`` (each a second call within a test), keep-alive and
#: token-lifetime intervals, a fresh Airflow interpreter. The OAuth 1.0a module is one group.
FAST_TIERS_LONGEST = (
    "tests/integration/test_oauth1.py::",
    "tests/integration/test_orders.py::test_a_retried_task_places_exactly_one_order",
    "tests/integration/test_orders.py::test_a_stale_order_list_falls_back_to_the_duplicate_coid_answer",
    "tests/integration/test_resilience.py::test_keepalive_tickles_an_idle_session_so_it_survives",
    "tests/integration/test_resilience.py::test_a_session_that_keeps_failing_is_not_retried_in_a_loop",
    "tests/integration/test_client.py::test_lost_session_is_recovered_once",
    "tests/integration/test_orders.py::test_same_coid_twice_places_once",
    "tests/integration/test_session_takeover.py::test_reconnect_moves_the_session_and_the_loser_names_the_taker",
    "tests/integration/test_flex.py::test_report_survives_1019_and_1018",
    "tests/integration/test_hook.py::test_a_malformed_fernet_key_names_the_option",
    "tests/integration/test_hook.py::test_a_fresh_home_without_a_fernet_key_works_and_warns",
    "tests/integration/test_resilience.py::test_without_keepalive_the_idle_session_expires_and_is_recovered",
)
#: Then the longest e2e tests, with the long ones that mostly wait (IBKR's pacing across eight
#: processes, a session's renewal ahead of expiry) between them: one waiting beside two busy ones
#: keeps both cores working, where the waits bunched together at the end had left them idle.
#: Two tests of a few milliseconds follow the LocalExecutor module (one group, ~110 s on one worker):
#: pytest-xdist gives a worker its next unit once it has two or fewer tests pending, so without
#: them the next long test would wait behind that group on the same worker.
E2E_LONGEST = (
    "tests/e2e/test_local_executor.py::",
    "tests/e2e/test_provider.py::test_entry_point_and_package_name_match_the_distribution",
    "tests/e2e/test_provider.py::test_provider_info_validates_against_airflow_schema",
    "tests/e2e/test_shared_session.py::test_renewal_ahead_of_expiry_with_no_failed_request",
    "tests/e2e/test_dags.py::test_risk_monitor",
    "tests/e2e/test_pacing.py::test_eight_processes_pace_together_without_losing_slots[file]",
    "tests/e2e/test_dags.py::test_rebalance",
    "tests/e2e/test_pacing.py::test_eight_processes_pace_together_without_losing_slots[redis]",
    "tests/e2e/test_oauth1_runs.py::test_eight_processes_share_one_live_session_token_with_timestamps_in_order",
)


def _start_rank(item: pytest.Item, tier: str) -> tuple[int, int]:
    """(part, position in it): ``FIRST``, the listed and then the other unit and integration
    tests, ``E2E_LONGEST`` and then the other e2e tests (ties keep collection order)."""
    listed = ((0, FIRST), (3, E2E_LONGEST)) if tier == "e2e" else ((1, FAST_TIERS_LONGEST),)
    for part, prefixes in listed:
        for i, prefix in enumerate(prefixes):
            if item.nodeid.startswith(prefix):
                return part, i
    return (4 if tier == "e2e" else 2), 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier (its folder below tests/) and order the start (above)."""
    tests_dir = Path(__file__).resolve().parent
    ranks: dict[str, tuple[int, int]] = {}
    for item in items:
        tier = Path(str(item.path)).resolve().relative_to(tests_dir).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
        ranks[item.nodeid] = _start_rank(item, tier)
    items.sort(key=lambda item: ranks[item.nodeid])  # stable: ties keep their order


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """One OAuth 2.0 sandbox for the session; tests that count requests call ``reset()``.

    Its market clock is stopped (``--price-tick-seconds 0``): prices stay at their seeded values
    unless a test steps the market or sets a price, so expected amounts are exact.
    """
    running = start_sandbox(tmp_path_factory.mktemp("sandbox"), "--price-tick-seconds", "0")
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
def oauth1_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """A sandbox whose clients authenticate with self-service OAuth 1.0a (market clock stopped)."""
    running = start_sandbox(
        tmp_path_factory.mktemp("oauth1"), "--price-tick-seconds", "0", "--auth", "oauth1a"
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def fresh_oauth1_sandbox(oauth1_sandbox: RunningSandbox) -> RunningSandbox:
    oauth1_sandbox.reset()
    return oauth1_sandbox


@pytest.fixture(scope="session")
def gateway_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """A sandbox in Client Portal Gateway mode (TLS with its own CA, no auth)."""
    running = start_sandbox(tmp_path_factory.mktemp("gateway"), "--price-tick-seconds", "0", gateway=True)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def airflow_home() -> Path:
    return Path(_AIRFLOW_HOME)


@pytest.fixture(autouse=True)
def isolated_session_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Each test gets its own file session cache (hooks read [ibkr] session_cache_dir) and an
    empty per-process memory cache, so no session leaks from one test into another."""
    from ibkr_provider.client.session.stores.memory import MemorySessionStore

    cache = tmp_path / "session-cache"
    monkeypatch.setenv("AIRFLOW__IBKR__SESSION_CACHE_DIR", str(cache))
    MemorySessionStore.clear()
    yield cache


@pytest.fixture(autouse=True)
def fresh_secrets_masker() -> None:
    """Each test starts with an empty log masker, as each Airflow task process does (the
    supervisor resets it). Airflow recompiles one expression of every registered secret whenever
    one is added, so a worker carrying every earlier test's keys and tokens spent more and more
    CPU on each registration (32 of 63 CPU-seconds of the fast tiers in one process). Both copies
    (the task side's and the API server's) are reset; one not imported yet has nothing to reset."""
    for name in ("airflow.sdk._shared.secrets_masker", "airflow._shared.secrets_masker"):
        if (module := sys.modules.get(name)) is not None:
            module.reset_secrets_masker()


@pytest.fixture(autouse=True)
def no_leaked_keepalive() -> Iterator[None]:
    """Every client a test opens is closed by the test (or the operator, hook or trigger it ran):
    no keep-alive thread may outlive it."""
    before = set(threading.enumerate())

    def started_here() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "ibkr-keepalive" and t not in before]

    yield
    deadline = time.monotonic() + 2
    while (alive := started_here()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive, f"{len(alive)} keep-alive thread(s) outlived the test: a client was not closed"


@pytest.fixture
def make_client() -> Iterator[Callable[..., IbkrClient]]:
    """Build clients against a sandbox (memory cache unless told otherwise); all are closed at
    the end of the test so no keep-alive thread outlives it."""
    made: list[IbkrClient] = []

    def build(sandbox: RunningSandbox, **overrides: object) -> IbkrClient:
        overrides.setdefault("session_cache", "memory")
        client = IbkrClient(IbkrClientConfig.from_mapping(sandbox.client_config_values(**overrides)))
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `airflow db migrate` per test run; tests copy its database (a migration costs about
    6 s of CPU, a copy milliseconds). The pytest-xdist workers of one run share it: the first to
    need it migrates under a file lock in the run's temporary root, the others wait and copy."""
    import fcntl

    from tests.support.airflow_cli import airflow_env, run_airflow

    shared = bool(os.environ.get("PYTEST_XDIST_WORKER"))
    # a worker's base temp is <run>/popen-gwN: its parent belongs to this run alone
    root = tmp_path_factory.getbasetemp().parent if shared else tmp_path_factory.getbasetemp()
    home = root / "airflow-template"
    with open(root / "airflow-template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / "migrated").exists():
            home.mkdir(exist_ok=True)
            result = run_airflow(["db", "migrate"], airflow_env(home, REPO_ROOT / "dags"), timeout=300)
            assert result.returncode == 0, result.stderr[-3000:]
            (home / "migrated").touch()
    return home / "airflow.db"


@pytest.fixture(scope="session")
def airflow_cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowCli]:
    """This pytest process's way to run ``airflow`` commands (forked from a warm interpreter)."""
    cli = AirflowCli(tmp_path_factory.mktemp("airflow-cli"))
    try:
        yield cli
    finally:
        cli.close()


@pytest.fixture
def fresh_airflow_home(migrated_template: Path, tmp_path: Path) -> Path:
    """An AIRFLOW_HOME of this test's own with a migrated, empty metadata database."""
    import shutil

    home = tmp_path / "airflow-home"
    home.mkdir()
    shutil.copy(migrated_template, home / "airflow.db")
    return home
