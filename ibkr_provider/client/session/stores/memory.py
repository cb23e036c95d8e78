"""The ``memory`` session store: per process, for notebooks and tests."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator

from ibkr_provider.client.session.record import SessionRecord
from ibkr_provider.client.session.stores.base import Lease, SessionStore, lock_timeout


class MemorySessionStore(SessionStore):
    """Per-process store. Instances share one registry, so every client in a process
    (each task's hook) sees the same session, like the other backends."""

    _records: dict[str, SessionRecord] = {}
    _used: dict[str, float] = {}
    _locks: dict[str, threading.Lock] = {}
    _next_free: dict[tuple[str, str], int] = {}
    _stashed: dict[str, tuple[bytes, float]] = {}
    _markers: dict[str, str] = {}
    _guard = threading.Lock()

    def load(self, key: str) -> SessionRecord | None:
        record = self._records.get(key)
        return dataclasses.replace(record) if record else None

    def save(self, key: str, record: SessionRecord) -> None:
        self._records[key] = dataclasses.replace(record)

    def delete(self, key: str) -> None:
        with self._guard:
            self._records.pop(key, None)
            self._used.pop(key, None)

    def read_marker(self, key: str) -> str | None:
        return self._markers.get(key)

    def write_marker(self, key: str, value: str) -> None:
        with self._guard:
            self._markers[key] = value

    @contextlib.contextmanager
    def _acquire(self, key: str, timeout: float) -> Iterator[Lease]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        if not lock.acquire(timeout=timeout):
            raise lock_timeout(key, timeout)
        try:
            yield Lease(key)
        finally:
            lock.release()

    def reserve_slot(self, key: str, bucket: str, *, earliest_ms: int, interval_ms: int) -> int:
        with self._guard:
            slot = max(earliest_ms, self._next_free.get((key, bucket), 0))
            self._next_free[(key, bucket)] = slot + interval_ms
            return slot

    def mark_used(self, key: str, when: float) -> None:
        self._used[key] = max(when, self._used.get(key, 0.0))

    def last_used(self, key: str) -> float:
        return self._used.get(key, 0.0)

    def _put(self, key: str, data: bytes, ttl_seconds: float) -> None:
        with self._guard:
            self._stashed[key] = (data, time.monotonic() + ttl_seconds)

    def _pop(self, key: str) -> bytes | None:
        with self._guard:
            data, expires = self._stashed.pop(key, (b"", 0.0))
        return data if expires > time.monotonic() else None

    @classmethod
    def clear(cls) -> None:
        """Forget every record and pacing state of this process (tests, notebooks)."""
        with cls._guard:
            cls._records.clear()
            cls._used.clear()
            cls._stashed.clear()
            cls._next_free.clear()
            cls._markers.clear()
