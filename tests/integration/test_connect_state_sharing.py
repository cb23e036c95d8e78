"""Pending Connect IBKR consents are taken exactly once, by one of several processes (file store)
or API server hosts (Redis), and expire."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

from ibkr_provider.client.session.stores.file import FileSessionStore
from ibkr_provider.client.session.stores.redis_store import RedisSessionStore
from tests.support.redis_server import redis_server


class ReadThenDelete(FileSessionStore):
    """The control: a take that reads the stash and deletes it in two steps (the bug a rename
    avoids), with the window between them a loaded machine can leave."""

    def _pop(self, key: str) -> bytes | None:
        path = self._path(key, "stash")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        time.sleep(0.05)
        path.unlink(missing_ok=True)
        return data.partition(b"\n")[2]


def _take(
    store_type: type[FileSessionStore],
    directory: str,
    key: str,
    barrier: Any,
    out: multiprocessing.Queue[bytes | None],
) -> None:
    store = store_type(Path(directory))
    barrier.wait(30)  # all six take at once, not one after another
    out.put(store.take(key))


def _race(store_type: type[FileSessionStore], directory: Path, takers: int = 6) -> list[bytes | None]:
    FileSessionStore(directory).stash("connect-x", b"record", 60)
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[bytes | None] = context.Queue()
    barrier = context.Barrier(takers)
    workers = [
        context.Process(target=_take, args=(store_type, str(directory), "connect-x", barrier, out))
        for _ in range(takers)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    return [out.get(timeout=5) for _ in workers]


def test_a_stashed_state_is_taken_by_exactly_one_process(tmp_path: Path) -> None:
    """Ten rounds of twelve takers released together: one winner every time."""
    for round_ in range(10):
        results = _race(FileSessionStore, tmp_path, takers=12)
        assert results.count(b"record") == 1 and results.count(None) == 11, (round_, results)
        assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_the_race_harness_catches_a_read_then_delete_take(tmp_path: Path) -> None:
    """Proof that the harness above can fail: takers released together through a barrier, a
    non-atomic take hands the same consent to more than one."""
    results = _race(ReadThenDelete, tmp_path)
    assert results.count(b"record") >= 2, results


def test_a_redis_stash_is_single_use_and_expires(tmp_path: Path) -> None:
    """Several API server hosts share pending consents through Redis (``[ibkr] connect_state_cache``)."""
    with redis_server(tmp_path / "redis") as url:
        store, other = RedisSessionStore(url), RedisSessionStore(url)
        store.stash("connect-r", b"record", 60)
        assert other.take("connect-r") == b"record" and store.take("connect-r") is None
        store.stash("connect-s", b"late", 0.05)
        time.sleep(0.2)
        assert other.take("connect-s") is None
