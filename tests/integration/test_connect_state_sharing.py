"""Pending Connect IBKR consents are taken exactly once, by one of several processes (file store)
or API server hosts (Redis), and expire."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from ibkr_provider.client.redis_store import RedisSessionStore
from ibkr_provider.client.stores import FileSessionStore
from tests.support.redis_server import redis_server


def _take(directory: str, key: str, out: multiprocessing.Queue[bytes | None]) -> None:
    out.put(FileSessionStore(Path(directory)).take(key))


def test_a_stashed_state_is_taken_by_exactly_one_process(tmp_path: Path) -> None:
    store = FileSessionStore(tmp_path)
    store.stash("connect-x", b"record", 60)
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[bytes | None] = context.Queue()
    workers = [context.Process(target=_take, args=(str(tmp_path), "connect-x", out)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    results = [out.get(timeout=5) for _ in workers]
    assert results.count(b"record") == 1 and results.count(None) == 5
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_a_redis_stash_is_single_use_and_expires(tmp_path: Path) -> None:
    """Several API server hosts share pending consents through Redis (``[ibkr] connect_state_cache``)."""
    with redis_server(tmp_path / "redis") as url:
        store, other = RedisSessionStore(url), RedisSessionStore(url)
        store.stash("connect-r", b"record", 60)
        assert other.take("connect-r") == b"record" and store.take("connect-r") is None
        store.stash("connect-s", b"late", 0.05)
        time.sleep(0.2)
        assert other.take("connect-s") is None
