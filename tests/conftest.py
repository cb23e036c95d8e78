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

import atexit
import gc
import os
import shutil
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

_HOME_OWNER = os.getpid()


def _remove_airflow_home() -> None:
    """At exit, in the process that made it (not in a child forked from it): a run used to leave
    one such directory in the system's temporary folder per pytest process."""
    if os.getpid() == _HOME_OWNER:
        shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


atexit.register(_remove_airflow_home)

import pytest  # noqa: E402
from ibkr_sandbox.process import RunningSandbox, start_sandbox  # noqa: E402

from ibkr_provider.client import IbkrClient, IbkrClientConfig  # noqa: E402
from tests.support import durations  # noqa: E402
from tests.support.airflow_cli import AirflowCli  # noqa: E402
from tests.support.airflow_fork_server import exit_without_teardown  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent


TIERS = ("unit", "integration", "e2e")


#: How long each test took when last measured (seconds; the suite rewrites it after each run,
#: tests/support/durations.py). pytest-xdist hands tests to its workers in collection order, one as
#: each finishes (``--no-loadscope-reorder`` keeps it from moving groups ahead), so the longest
#: start first and none runs alone at the end, and the cheapest few wait behind them
#: (``durations.start_order``); an xdist group (one worker runs all of it) counts as its tests
#: together. A test never measured (new, or renamed) starts as if it took
#: ``UNMEASURED_SECONDS`` of its tier: early, and measured from then on.
DURATIONS = Path(__file__).resolve().parent / "durations.json"
UNMEASURED_SECONDS = {"unit": 0.5, "integration": 3.0, "e2e": 20.0}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its tier (its folder below tests/) and order the start (above)."""
    tests_dir = Path(__file__).resolve().parent
    recorded = durations.load(DURATIONS)
    costs: dict[str, float] = {}
    groups: dict[str, str] = {}
    for item in items:
        tier = Path(str(item.path)).resolve().relative_to(tests_dir).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
        marker = item.get_closest_marker("xdist_group")
        group = groups[item.nodeid] = str(marker.args[0]) if marker and marker.args else item.nodeid
        cost = recorded.get(durations.plain_id(item.nodeid), UNMEASURED_SECONDS.get(tier, 1.0))
        costs[group] = costs.get(group, 0.0) + cost
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    rank = {unit: place for place, unit in enumerate(durations.start_order(costs, workers))}
    items.sort(key=lambda item: rank[groups[item.nodeid]])


_RECORDER = durations.Recorder()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _RECORDER.measure(report)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller, or a run without xdist
        _RECORDER.save(DURATIONS, tiers=TIERS)
    else:
        atexit.register(_exit_without_teardown)


def _exit_without_teardown() -> None:
    """End an xdist worker once its exit handlers ran, without the interpreter's teardown.

    A worker has sent every report by now. Tearing down its heap (Airflow, SQLAlchemy, pydantic,
    FastAPI) is all that is left, and eight workers doing it at once on two cores held the end of
    ``make test-fast`` 2.5 s (49.2 s with it, 46.6 s without). Registered last, this handler runs
    first: it runs the others (logging, multiprocessing, Airflow's), flushes, and exits."""
    atexit.unregister(_exit_without_teardown)
    exit_without_teardown(0)


#: Marks a directory :func:`_made_once_per_run` finished making.
_MADE = ".made"


def _made_once_per_run(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]
) -> Path:
    """``<run>/name``, made by ``make`` once per test run: the pytest-xdist workers of a run
    share its temporary root (a worker's base temp is <run>/popen-gwN, whose parent belongs to this
    run alone). The first worker to need it makes it under a file lock, the others wait; what a
    worker that died while making it left is removed and made again."""
    import fcntl

    shared = bool(os.environ.get("PYTEST_XDIST_WORKER"))
    root = tmp_path_factory.getbasetemp().parent if shared else tmp_path_factory.getbasetemp()
    made = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (made / _MADE).exists():
            shutil.rmtree(made, ignore_errors=True)
            made.mkdir()
            make(made)
            (made / _MADE).touch()
    return made


@pytest.fixture(scope="session")
def sandbox_state(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """New state directories for sandboxes, each holding this run's one set of the sandbox's
    keys (its demo client's pair, the OAuth 1.0a consumer's two pairs, the gateway's TLS).

    A sandbox creates whatever its state directory lacks, and generating those RSA keys costs
    about 0.2 s of CPU per start, with every worker starting sandboxes of its own. The first
    worker to need them runs the sandbox's own ``ensure_*`` functions into a template under a file
    lock in the run's temporary root; each directory is a copy (file modes kept). ``make up``,
    ``make demo`` and ``make cluster`` still generate theirs (docs/development.md, Sandbox keys)."""
    from ibkr_sandbox.files import ensure_client_keys, ensure_gateway_tls, ensure_oauth1_consumer

    def make_keys(template: Path) -> None:
        ensure_client_keys(template)
        ensure_oauth1_consumer(template)
        ensure_gateway_tls(template)

    template = _made_once_per_run(tmp_path_factory, "sandbox-keys", make_keys)
    files = [path for path in template.iterdir() if path.name != _MADE]

    def new_state_dir(name: str) -> Path:
        state_dir = tmp_path_factory.mktemp(name)
        for path in files:
            shutil.copy2(path, state_dir / path.name)
        return state_dir

    return new_state_dir


@pytest.fixture(scope="session")
def sandbox(sandbox_state: Callable[[str], Path]) -> Iterator[RunningSandbox]:
    """One OAuth 2.0 sandbox for the session; tests that count requests call ``reset()``.

    Its market clock is stopped (``--price-tick-seconds 0``): prices stay at their seeded values
    unless a test steps the market or sets a price, so expected amounts are exact.
    """
    running = start_sandbox(sandbox_state("sandbox"), "--price-tick-seconds", "0")
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
def oauth1_sandbox(sandbox_state: Callable[[str], Path]) -> Iterator[RunningSandbox]:
    """A sandbox whose clients authenticate with self-service OAuth 1.0a (market clock stopped)."""
    running = start_sandbox(sandbox_state("oauth1"), "--price-tick-seconds", "0", "--auth", "oauth1a")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def fresh_oauth1_sandbox(oauth1_sandbox: RunningSandbox) -> RunningSandbox:
    oauth1_sandbox.reset()
    return oauth1_sandbox


@pytest.fixture(scope="session")
def gateway_sandbox(sandbox_state: Callable[[str], Path]) -> Iterator[RunningSandbox]:
    """A sandbox in Client Portal Gateway mode (TLS with its own CA, no auth)."""
    running = start_sandbox(sandbox_state("gateway"), "--price-tick-seconds", "0", gateway=True)
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


_MODULES_AT_LAST_FREEZE = [0]


@pytest.fixture(autouse=True)
def frozen_imports() -> None:
    """Move what is alive into the collector's permanent generation whenever the tests imported
    a batch of modules since the last time (Airflow, SQLAlchemy, FastAPI: imported by the tests
    that use them). Python's full collections otherwise walk those million objects again and
    again: 1.5 s of CPU per worker of ``make test-fast``. Freezing only after imports keeps what
    it holds back from collection to the few times a worker's heap really grew."""
    if len(sys.modules) > _MODULES_AT_LAST_FREEZE[0] + 50:
        gc.freeze()
        _MODULES_AT_LAST_FREEZE[0] = len(sys.modules)


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
    from scripts.local_airflow import airflow_env, run_airflow

    def migrate(home: Path) -> None:
        result = run_airflow(["db", "migrate"], airflow_env(home, REPO_ROOT / "dags"), timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]

    home = _made_once_per_run(tmp_path_factory, "airflow-template", migrate)
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
