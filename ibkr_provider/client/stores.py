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
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ibkr_provider.client.errors import IbkrConfigError, IbkrErrorCode, IbkrSessionError
from ibkr_provider.client.locking import flock, locked, write_private_atomically
from ibkr_provider.client.record import Cipher, SessionRecord

log = logging.getLogger(__name__)

#: How long a process waits for another process's renewal before giving up.
LOCK_TIMEOUT_SECONDS = 120.0
#: A Redis lock expires on its own this long after its holder stops renewing it, so a killed
#: worker never wedges the others; a live holder renews it every third of that.
REDIS_LOCK_TTL_SECONDS = 30.0

#: Atomically claim a pacing slot in Redis (milliseconds): slot = max(earliest, next free).
RESERVE_SLOT_LUA = """
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(tonumber(ARGV[1]), next_free)
redis.call('SET', KEYS[1], string.format('%d', slot + tonumber(ARGV[2])), 'PX', tonumber(ARGV[3]))
return string.format('%d', slot)
"""


def lock_timeout(key: str, timeout: float) -> IbkrSessionError:
    return IbkrSessionError(
        f"timed out after {timeout:g} s waiting for the lock {key}", code=IbkrErrorCode.LOCK_TIMEOUT
    )


class Lease:
    """A held lock. File and memory locks are held until released; :class:`RedisLease` can
    lapse, and says so."""

    def __init__(self, key: str) -> None:
        self.key = key

    @property
    def held(self) -> bool:
        return True

    def check(self) -> None:
        """Raise :class:`IbkrSessionError` if the lock was lost (before an irreversible step)."""
        if not self.held:
            raise IbkrSessionError(
                f"the lock {self.key} lapsed while held (its holder stalled longer than the lease); "
                "stopping before anything irreversible is sent",
                code=IbkrErrorCode.LOCK_TIMEOUT,
            )


class RedisLease(Lease):
    """A Redis lock renewed by a watchdog thread while held (redis-py's ``Lock.reacquire``), so a
    placement that takes longer than the lease keeps it; it lapses only if the holder's process
    stops (or Redis loses the key), and :meth:`check` then refuses to go on."""

    def __init__(self, key: str, lock: Any, lease_seconds: float) -> None:
        super().__init__(key)
        self._lock = lock
        self._period = max(0.05, lease_seconds / 3)
        self._lost = threading.Event()
        self._done = threading.Event()
        self._watchdog = threading.Thread(target=self._renew, name="ibkr-lock-lease", daemon=True)

    @property
    def held(self) -> bool:
        return not self._lost.is_set()

    def start(self) -> None:
        self._watchdog.start()

    def _renew(self) -> None:
        from redis.exceptions import LockError

        while not self._done.wait(self._period):
            try:
                self._lock.reacquire()
            except LockError:
                self._lost.set()
                log.warning("lost the Redis lock %s: another process may hold it now", self.key)
                return

    def end(self) -> None:
        from redis.exceptions import LockError

        self._done.set()
        self._watchdog.join()
        if self._lost.is_set():
            return
        try:
            self._lock.release()
        except LockError:
            log.warning("the Redis lock %s had lapsed before its release", self.key)


class SessionStore(ABC):
    """A place for session records, their locks and the shared pacing state."""

    def __init__(self, cipher: Cipher | None = None) -> None:
        self._cipher = cipher
        self._held = threading.local()
        self._memo_lock = threading.Lock()
        self._memo_data: bytes | None = None
        self._memo_record: SessionRecord | None = None

    def _seal(self, record: SessionRecord) -> bytes:
        data = record.to_bytes()
        return self._cipher.encrypt(data) if self._cipher else data

    def _open(self, data: bytes) -> SessionRecord | None:
        """The record in ``data``; decrypted once per distinct value (every request reads the
        shared record, and it rarely changes)."""
        with self._memo_lock:
            if data == self._memo_data and self._memo_record is not None:
                return dataclasses.replace(self._memo_record)
        try:
            plain = self._cipher.decrypt(data) if self._cipher else data
            record = SessionRecord.from_bytes(plain)
        except Exception:
            return None
        with self._memo_lock:
            self._memo_data, self._memo_record = data, dataclasses.replace(record)
        return record

    @abstractmethod
    def load(self, key: str) -> SessionRecord | None:
        """The record, or None when there is none (or it cannot be read)."""

    def stash(self, key: str, data: bytes, ttl_seconds: float) -> None:
        """Keep ``data`` under ``key`` for one later :meth:`take` (encrypted when there is a
        cipher). Used for pending "Connect IBKR" consents, which any API server may finish."""
        self._put(key, self._cipher.encrypt(data) if self._cipher else data, ttl_seconds)

    def take(self, key: str) -> bytes | None:
        """What :meth:`stash` kept under ``key``, removed in the same step, so only one caller
        ever gets it; None when there is nothing (never stashed, taken already, or unreadable)."""
        sealed = self._pop(key)
        if sealed is None:
            return None
        try:
            return self._cipher.decrypt(sealed) if self._cipher else sealed
        except Exception:
            return None

    @abstractmethod
    def _put(self, key: str, data: bytes, ttl_seconds: float) -> None: ...

    @abstractmethod
    def _pop(self, key: str) -> bytes | None: ...

    @abstractmethod
    def save(self, key: str, record: SessionRecord) -> None:
        """Store the record; readers never see a half-written one."""

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[Lease]:
        """An exclusive lock across every process sharing this store (single flight), waited
        for at most ``timeout`` seconds. Yields the :class:`Lease`, which says whether the lock
        is still held (a Redis lock can lapse if its holder stalls).

        Re-entrant within a thread: a renewal that needs the lock again (a recovery inside a
        pre-flight) must not wait for itself.
        """
        held: dict[str, Lease] = self._held.__dict__.setdefault("leases", {})
        if key in held:
            yield held[key]
            return
        with self._acquire(key, timeout) as lease:
            held[key] = lease
            try:
                yield lease
            finally:
                del held[key]

    @abstractmethod
    def _acquire(self, key: str, timeout: float) -> contextlib.AbstractContextManager[Lease]:
        """The backend's exclusive cross-process lock for ``key``."""

    @abstractmethod
    def reserve_slot(self, key: str, bucket: str, *, earliest_ms: int, interval_ms: int) -> int:
        """Claim the next free send time of a pacing bucket, atomically for every process.

        The slot is ``max(earliest_ms, next free)``; the bucket's next free time then moves one
        ``interval_ms`` past it. Returns the slot (epoch milliseconds).
        """

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
    _next_free: dict[tuple[str, str], int] = {}
    _stashed: dict[str, tuple[bytes, float]] = {}
    _guard = threading.Lock()

    def load(self, key: str) -> SessionRecord | None:
        record = self._records.get(key)
        return dataclasses.replace(record) if record else None

    def save(self, key: str, record: SessionRecord) -> None:
        self._records[key] = dataclasses.replace(record)

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


# ---------------------------------------------------------------------------- file
class FileSessionStore(SessionStore):
    """One directory per host; files mode 0600 in a 0700 directory."""

    def __init__(self, directory: Path, cipher: Cipher | None = None) -> None:
        super().__init__(cipher)
        self.directory = directory.expanduser()
        self._pace_fds: dict[tuple[str, str], tuple[int, int]] = {}
        self._pace_guard = threading.Lock()
        self._loaded: dict[str, tuple[tuple[int, int, int], SessionRecord]] = {}
        self._session_paths: dict[str, Path] = {}
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
        path = self._session_paths.get(key)
        if path is None:
            path = self._session_paths[key] = self._path(key, "session")
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return None
        # Records are replaced atomically, so an unchanged (inode, mtime, size) is the same record:
        # re-read (and decrypt) it only when another process saved a new one.
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = self._loaded.get(key)
        if cached is not None and cached[0] == version:
            return dataclasses.replace(cached[1])
        try:
            record = self._open(path.read_bytes())
        except FileNotFoundError:
            return None
        if record is not None:
            self._loaded[key] = (version, dataclasses.replace(record))
        return record

    def save(self, key: str, record: SessionRecord) -> None:
        write_private_atomically(self._path(key, "session"), self._seal(record))

    def _put(self, key: str, data: bytes, ttl_seconds: float) -> None:
        expires = repr(time.time() + ttl_seconds).encode()
        write_private_atomically(self._path(key, "stash"), expires + b"\n" + data)

    def _pop(self, key: str) -> bytes | None:
        # rename is atomic: of two processes taking the same key, exactly one finds the file
        claimed = self._path(key, f"taken.{os.getpid()}.{threading.get_ident()}")
        try:
            os.rename(self._path(key, "stash"), claimed)
        except FileNotFoundError:
            return None
        try:
            expires, _, data = claimed.read_bytes().partition(b"\n")
        finally:
            claimed.unlink(missing_ok=True)
        try:
            return data if float(expires) > time.time() else None
        except ValueError:
            return None

    @contextlib.contextmanager
    def _acquire(self, key: str, timeout: float) -> Iterator[Lease]:
        with flock(self._path(key, "lock"), timeout):
            yield Lease(key)

    def reserve_slot(self, key: str, bucket: str, *, earliest_ms: int, interval_ms: int) -> int:
        """One small file per bucket, locked and rewritten in place (every request does this, so
        it is a handful of system calls on a descriptor kept open, not a rename)."""
        # flock excludes other processes; threads of this one share the descriptor, so they
        # take the store's own lock first.
        with self._pace_guard:
            fd = self._pace_fd(key, bucket)
            return self._reserve_locked(fd, f"{key}.pace-{bucket}", earliest_ms, interval_ms)

    @staticmethod
    def _reserve_locked(fd: int, name: str, earliest_ms: int, interval_ms: int) -> int:
        with locked(fd, LOCK_TIMEOUT_SECONDS, name):
            raw = os.pread(fd, 32, 0)
            try:
                next_free = int(raw) if raw.strip() else 0
            except ValueError:
                next_free = 0
            slot = max(earliest_ms, next_free)
            os.pwrite(fd, f"{slot + interval_ms:020d}".encode(), 0)
            return slot

    def _pace_fd(self, key: str, bucket: str) -> int:
        """The bucket file's descriptor, opened once per process (after a fork, a new one: an
        inherited descriptor would share the parent's lock)."""
        opened = self._pace_fds.get((key, bucket))
        if opened is not None and opened[0] == os.getpid():
            return opened[1]
        fd = os.open(self._path(key, f"pace-{bucket}"), os.O_RDWR | os.O_CREAT, 0o600)
        self._pace_fds[(key, bucket)] = (os.getpid(), fd)
        return fd

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

    def __init__(
        self, url: str, cipher: Cipher | None = None, *, lease_seconds: float = REDIS_LOCK_TTL_SECONDS
    ) -> None:
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
        self._lease_seconds = lease_seconds
        self._reserve = self._redis.register_script(RESERVE_SLOT_LUA)

    def _name(self, key: str, part: str) -> str:
        return f"ibkr:{key}:{part}"

    def load(self, key: str) -> SessionRecord | None:
        data = self._redis.get(self._name(key, "session"))
        return self._open(data) if isinstance(data, bytes) else None

    def save(self, key: str, record: SessionRecord) -> None:
        self._redis.set(self._name(key, "session"), self._seal(record))

    @contextlib.contextmanager
    def _acquire(self, key: str, timeout: float) -> Iterator[Lease]:
        # Not thread-local: the lease's watchdog thread renews the token the holder acquired.
        lock = self._redis.lock(
            self._name(key, "lock"),
            timeout=self._lease_seconds,
            blocking_timeout=timeout,
            sleep=0.02,
            thread_local=False,
        )
        if not lock.acquire():
            raise lock_timeout(key, timeout)
        lease = RedisLease(key, lock, self._lease_seconds)
        lease.start()
        try:
            yield lease
        finally:
            lease.end()

    def reserve_slot(self, key: str, bucket: str, *, earliest_ms: int, interval_ms: int) -> int:
        name = self._name(key, f"pace:{bucket}")
        # The next free time expires a minute after it passes: an idle bucket leaves nothing behind.
        ttl_ms = interval_ms + 60_000
        return int(self._reserve(keys=[name], args=[earliest_ms, interval_ms, ttl_ms]))

    def mark_used(self, key: str, when: float) -> None:
        self._redis.set(self._name(key, "used"), repr(when))

    def _put(self, key: str, data: bytes, ttl_seconds: float) -> None:
        self._redis.set(self._name(key, "stash"), data, px=max(1, int(ttl_seconds * 1000)))

    def _pop(self, key: str) -> bytes | None:
        data = self._redis.getdel(self._name(key, "stash"))
        return data if isinstance(data, bytes) else None

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
