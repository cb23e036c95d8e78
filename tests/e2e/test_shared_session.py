"""One IBKR session for every process: eight OS processes (file cache, Redis) and eight threads
share one token, one SSO session and one brokerage session; renewal ahead of expiry; the stores'
locks. (Eight mapped tasks in a real executor: test_local_executor.py.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrClient, IbkrSessionError
from ibkr_provider.client.session.record import session_key
from ibkr_provider.client.session.stores.base import SessionStore
from ibkr_provider.client.session.stores.file import FileSessionStore
from ibkr_provider.client.session.stores.memory import MemorySessionStore
from ibkr_provider.client.session.stores.redis_store import RedisSessionStore
from tests.support.processes import cache_env, run_workers
from tests.support.redis_server import redis_server
from tests.support.sessions import ALL_ACCOUNTS, assert_one_session, assert_single_flight


def test_eight_processes_share_one_session_through_the_file_cache(
    fresh_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    env = {"AIRFLOW_CONN_IBKR_DEFAULT": fresh_sandbox.connection_json(), **cache_env(cache)}
    fresh_sandbox.inject_fault("/oauth2/api/v1/token", "delay", delay=1.0)
    results = run_workers(8, "accounts", env)
    assert len({r["pid"] for r in results}) == 8
    assert all(r["accounts"] == ALL_ACCOUNTS for r in results)
    assert_single_flight(results)
    stats = fresh_sandbox.stats()
    assert_one_session(stats)
    # IBKR paces /portfolio/accounts at 1 per 5 s: one read served all eight processes.
    assert stats["paths"]["GET /v1/api/portfolio/accounts"] == 1

    # What is on disk: mode 0600 files, the record encrypted with Airflow's Fernet key.
    files = [p for p in cache.iterdir() if p.is_file()]
    assert files and all(p.stat().st_mode & 0o077 == 0 for p in files)
    conn = fresh_sandbox.connection
    key = session_key(conn["host"], conn["login"], conn["extra"]["credential"])
    raw = (cache / f"{key}.session").read_bytes()
    assert raw.startswith(b"gAAAAA")  # a Fernet token, not JSON
    assert FileSessionStore(cache).load(key) is None  # unreadable without the key


def test_eight_processes_share_one_session_through_redis(
    fresh_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    with redis_server(tmp_path / "redis") as url:
        env = {"AIRFLOW_CONN_IBKR_DEFAULT": fresh_sandbox.connection_json(session_cache=url)}
        fresh_sandbox.inject_fault("/oauth2/api/v1/token", "delay", delay=1.0)
        results = run_workers(8, "accounts", env)
        assert_single_flight(results)
        conn = fresh_sandbox.connection
        key = session_key(conn["host"], conn["login"], conn["extra"]["credential"])
        assert RedisSessionStore(url).load(key) is None  # encrypted: not readable without Fernet
        import redis

        assert redis.Redis.from_url(url).get(f"ibkr:{key}:session").startswith(b"gAAAAA")
    assert all(r["accounts"] == ALL_ACCOUNTS for r in results)
    assert_one_session(fresh_sandbox.stats())


def test_renewal_ahead_of_expiry_with_no_failed_request(
    fresh_sandbox: RunningSandbox, make_client: Callable[..., IbkrClient]
) -> None:
    fresh_sandbox.configure(access_token_lifetime=5.0)
    client = make_client(fresh_sandbox, max_retries=0)
    import time

    deadline = time.monotonic() + 15
    calls = 0
    generations = set()
    while time.monotonic() < deadline:
        assert client.request("GET", "/iserver/accounts")["accounts"] == ALL_ACCOUNTS
        generations.add(client.session().generation)
        calls += 1
        time.sleep(0.2)
    stats = fresh_sandbox.stats()
    assert stats["http_401"] == 0 and stats["http_429"] == 0, stats
    # 15 s of 5 s tokens, renewed 2.5 s ahead of expiry: about six renewals, none late.
    assert 4 <= stats["tokens_issued"] <= 8, stats
    assert len(generations) == stats["tokens_issued"]
    assert calls > 30


@pytest.mark.parametrize("backend", ["file", "memory"])
def test_threads_of_one_process_log_in_once(
    fresh_sandbox: RunningSandbox, tmp_path: Path, backend: str, make_client: Callable[..., IbkrClient]
) -> None:
    """Threads of one process, each with its own client, open the shared session once."""
    from concurrent.futures import ThreadPoolExecutor

    cache = "memory" if backend == "memory" else f"file://{tmp_path / 'cache'}"

    def worker(_: int) -> list[str]:
        client = make_client(fresh_sandbox, session_cache=cache)
        return [a.account_id for a in client.list_accounts()]

    with ThreadPoolExecutor(8) as pool:
        assert all(r == ALL_ACCOUNTS for r in pool.map(worker, range(8)))
    assert_one_session(fresh_sandbox.stats())


def _wait_for_held_lock(store: SessionStore, key: str, timeout: float) -> float:
    """Hold ``key`` in another thread and time a wait of at most ``timeout`` for it."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.lock(key):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        started = time.monotonic()
        with (
            pytest.raises(IbkrSessionError, match=f"timed out after {timeout:g} s"),
            store.lock(key, timeout),
        ):
            pass
        return time.monotonic() - started
    finally:
        release.set()
        holder.join(10)


def test_every_store_waits_for_a_held_lock_only_as_long_as_asked(tmp_path: Path) -> None:
    """The placement lock waits much longer than the session lock; each store honours the wait."""
    with redis_server(tmp_path / "redis") as url:
        stores = [MemorySessionStore(), FileSessionStore(tmp_path / "files"), RedisSessionStore(url)]
        for store in stores:
            key = f"lock-wait-{type(store).__name__}"
            waited = _wait_for_held_lock(store, key, 0.3)
            assert 0.25 <= waited < 0.8, (store, waited)  # each store sleeps at most 100 ms between tries
            with store.lock(key, timeout=0.3):  # free again once released
                pass


def test_a_redis_lock_is_renewed_while_held_and_a_lost_lease_stops_the_holder(tmp_path: Path) -> None:
    """A placement may hold the order lock longer than the lease (paced order-list reads,
    retries): the lease is renewed while held, so nobody else gets the lock; if it is lost all
    the same (Redis lost the key), the holder stops before anything irreversible."""
    import redis

    with redis_server(tmp_path / "redis") as url:
        holder = RedisSessionStore(url, lease_seconds=0.3)
        other = RedisSessionStore(url, lease_seconds=0.3)
        with holder.lock("orders-lease") as lease:
            time.sleep(1.0)  # three lease lengths
            lease.check()  # still held: renewed
            with pytest.raises(IbkrSessionError, match="timed out"), other.lock("orders-lease", timeout=0.5):
                pass
            redis.Redis.from_url(url).delete("ibkr:orders-lease:lock")  # the lease is lost
            time.sleep(0.3)
            assert not lease.held
            with pytest.raises(IbkrSessionError, match="lapsed while held"):
                lease.check()
        with other.lock("orders-lease", timeout=0.5) as taken:  # free for the next holder
            taken.check()
