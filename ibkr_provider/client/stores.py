"""Where the shared IBKR session lives, so every task process uses one session per username.

IBKR allows one brokerage session per username: if every Airflow task logged in by itself,
parallel tasks would knock each other out ("competing") and each would pace itself alone.
A :class:`SessionStore` holds one :class:`~ibkr_provider.client.record.SessionRecord` per
(base URL, client id, credential), exclusive locks for single-flight renewal and order
placement, and the pacing state shared by all processes.

Backends (connection field ``session_cache``):

- ``file`` (default) or ``file:///some/dir``: files (mode 0600) in a directory, guarded by OS
  file locks (``fcntl.flock``). Shared by every process on one host.
- ``redis://host:port/db`` (extra ``redis``): one Redis key per session, a Redis lock with
  expiry, and pacing state updated atomically in Redis. Shared across hosts (CeleryExecutor).
- ``memory``: per process; for notebooks and tests.

Records written to disk or Redis are encrypted when a cipher is given (the hook passes
Airflow's Fernet key when one is configured).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ibkr_provider.client.errors import IbkrConfigError, IbkrErrorCode, IbkrSessionError
from ibkr_provider.client.locking import flock, write_private_atomically
from ibkr_provider.client.pacing_state import FileStateStore
from ibkr_provider.client.record import Cipher, SessionRecord

if TYPE_CHECKING:
    from pyrate_limiter import StateStore

#: How long a process waits for another process's renewal before giving up.
LOCK_TIMEOUT_SECONDS = 120.0
#: A Redis lock expires on its own after this long, so a killed worker never wedges the others.
REDIS_LOCK_TTL_SECONDS = 90.0


class SessionStore(ABC):
    """A place for session records, their locks and the shared pacing state."""

    def __init__(self, cipher: Cipher | None = None) -> None:
        self._cipher = cipher
        self._held = threading.local()

    def _seal(self, record: SessionRecord) -> bytes:
        data = record.to_bytes()
        return self._cipher.encrypt(data) if self._cipher else data

    def _open(self, data: bytes) -> SessionRecord | None:
        try:
            plain = self._cipher.decrypt(data) if self._cipher else data
            return SessionRecord.from_bytes(plain)
        except Exception:
            return None

    @abstractmethod
    def load(self, key: str) -> SessionRecord | None:
        """The record, or None when there is none (or it cannot be read)."""

    @abstractmethod
    def save(self, key: str, record: SessionRecord) -> None:
        """Store the record; readers never see a half-written one."""

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
        """An exclusive lock across every process sharing this store (single flight), waited
        for at most ``timeout`` seconds.

        Re-entrant within a thread: a renewal that needs the lock again (a recovery inside a
        pre-flight) must not wait for itself.
        """
        depth: dict[str, int] = self._held.__dict__.setdefault("depth", {})
        if depth.get(key, 0):
            depth[key] += 1
            try:
                yield
            finally:
                depth[key] -= 1
            return
        with self._acquire(key, timeout):
            depth[key] = 1
            try:
                yield
            finally:
                depth[key] = 0

    @abstractmethod
    def _acquire(self, key: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """The backend's exclusive cross-process lock for ``key``."""

    @abstractmethod
    def pacing_store(self, key: str, bucket: str) -> StateStore:
        """Atomic shared state for one pacing bucket (pyrate-limiter's store interface)."""

    @abstractmethod
    def mark_used(self, key: str, when: float) -> None:
        """Record that the session carried a request at ``when`` (for keep-alive)."""

    @abstractmethod
    def last_used(self, key: str) -> float:
        """When the session last carried a request, from any process (0 if never)."""


# ---------------------------------------------------------------------------- memory
class MemorySessionStore(SessionStore):
    """Per-process store. Instances share one registry, so every client in a process
    (each task's hook) sees the same session, like the other backends."""

    _records: dict[str, SessionRecord] = {}
    _used: dict[str, float] = {}
    _locks: dict[str, threading.Lock] = {}
    _pacing: dict[tuple[str, str], Any] = {}
    _guard = threading.Lock()

    def load(self, key: str) -> SessionRecord | None:
        record = self._records.get(key)
        return dataclasses.replace(record) if record else None

    def save(self, key: str, record: SessionRecord) -> None:
        self._records[key] = dataclasses.replace(record)

    @contextlib.contextmanager
    def _acquire(self, key: str, timeout: float) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        if not lock.acquire(timeout=timeout):
            raise IbkrSessionError(
                f"timed out after {timeout:g} s waiting for the lock {key}", code=IbkrErrorCode.LOCK_TIMEOUT
            )
        try:
            yield
        finally:
            lock.release()

    def pacing_store(self, key: str, bucket: str) -> StateStore:
        from pyrate_limiter import InMemoryStateStore

        with self._guard:
            store = self._pacing.get((key, bucket))
            if store is None:
                store = self._pacing[(key, bucket)] = InMemoryStateStore()
            return store

    def mark_used(self, key: str, when: float) -> None:
        self._used[key] = max(when, self._used.get(key, 0.0))

    def last_used(self, key: str) -> float:
        return self._used.get(key, 0.0)

    @classmethod
    def clear(cls) -> None:
        """Forget every record and pacing state of this process (tests, notebooks)."""
        with cls._guard:
            cls._records.clear()
            cls._used.clear()
            cls._pacing.clear()


# ---------------------------------------------------------------------------- file
class FileSessionStore(SessionStore):
    """One directory per host; files mode 0600 in a 0700 directory."""

    def __init__(self, directory: Path, cipher: Cipher | None = None) -> None:
        super().__init__(cipher)
        self.directory = directory.expanduser()
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise IbkrConfigError(
                "session_cache",
                f"cannot create the session cache directory {str(self.directory)!r} ({exc.strerror})",
            ) from None

    def _path(self, key: str, suffix: str) -> Path:
        return self.directory / f"{key}.{suffix}"

    def load(self, key: str) -> SessionRecord | None:
        try:
            return self._open(self._path(key, "session").read_bytes())
        except FileNotFoundError:
            return None

    def save(self, key: str, record: SessionRecord) -> None:
        write_private_atomically(self._path(key, "session"), self._seal(record))

    def _acquire(self, key: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        return flock(self._path(key, "lock"), timeout)

    def pacing_store(self, key: str, bucket: str) -> StateStore:
        return FileStateStore(self._path(key, f"pace-{bucket}"))  # type: ignore[return-value]

    def mark_used(self, key: str, when: float) -> None:
        write_private_atomically(self._path(key, "used"), repr(when).encode())

    def last_used(self, key: str) -> float:
        try:
            return float(self._path(key, "used").read_text())
        except (OSError, ValueError):
            return 0.0


# ---------------------------------------------------------------------------- redis
class RedisSessionStore(SessionStore):
    """Shared across hosts through Redis (install the ``redis`` extra)."""

    def __init__(self, url: str, cipher: Cipher | None = None) -> None:
        super().__init__(cipher)
        try:
            import redis
        except ImportError:
            raise IbkrConfigError(
                "session_cache",
                "a redis:// cache needs the redis client: pip install 'airflow-provider-ibkr[redis]'",
            ) from None
        self._url = url
        self._redis = redis.Redis.from_url(url)

    def _name(self, key: str, part: str) -> str:
        return f"ibkr:{key}:{part}"

    def load(self, key: str) -> SessionRecord | None:
        data = self._redis.get(self._name(key, "session"))
        return self._open(data) if isinstance(data, bytes) else None

    def save(self, key: str, record: SessionRecord) -> None:
        self._redis.set(self._name(key, "session"), self._seal(record))

    @contextlib.contextmanager
    def _acquire(self, key: str, timeout: float) -> Iterator[None]:
        lock = self._redis.lock(
            self._name(key, "lock"),
            timeout=REDIS_LOCK_TTL_SECONDS,
            blocking_timeout=timeout,
            sleep=0.02,
        )
        if not lock.acquire():
            raise IbkrSessionError(
                f"timed out after {timeout:g} s waiting for the Redis lock {key}",
                code=IbkrErrorCode.LOCK_TIMEOUT,
            )
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                lock.release()

    def pacing_store(self, key: str, bucket: str) -> StateStore:
        from pyrate_limiter import RedisStateStore

        return RedisStateStore(self._redis, self._name(key, f"pace:{bucket}"))

    def mark_used(self, key: str, when: float) -> None:
        self._redis.set(self._name(key, "used"), repr(when))

    def last_used(self, key: str) -> float:
        value = self._redis.get(self._name(key, "used"))
        try:
            return float(value) if isinstance(value, bytes) else 0.0
        except ValueError:
            return 0.0


def build_session_store(spec: str | None, *, default_dir: Path, cipher: Cipher | None = None) -> SessionStore:
    """The store for a ``session_cache`` value: ``file``, ``file:///dir``, ``memory`` or ``redis://...``."""
    text = (spec or "file").strip()
    lowered = text.lower()
    if lowered == "memory":
        return MemorySessionStore()
    if lowered == "file":
        return FileSessionStore(default_dir, cipher)
    if lowered.startswith("file://"):
        path = urlsplit(text).path
        if not path:
            raise IbkrConfigError(
                "session_cache", "file:// needs an absolute directory, e.g. file:///var/cache/ibkr"
            )
        return FileSessionStore(Path(path), cipher)
    if lowered.startswith(("redis://", "rediss://", "unix://")):
        return RedisSessionStore(text, cipher)
    raise IbkrConfigError(
        "session_cache", f"{text!r} is not a cache; use file, file:///dir, memory or redis://host:6379/0"
    )
