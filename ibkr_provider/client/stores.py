"""Where the shared IBKR session lives, so every task process uses one session per username.

IBKR allows one brokerage session per username: if every Airflow task logged in by itself,
parallel tasks would knock each other out ("competing") and each would pace itself alone.
A :class:`SessionStore` holds one :class:`~ibkr_provider.client.record.SessionRecord` per
(base URL, client id, credential), exclusive locks for single-flight renewal and order
placement, and the pacing state shared by all processes.

Backends (connection field ``session_cache``):

- ``file`` (default) or ``file:///some/dir``: files (mode 0600) in a directory, guarded by OS
  file locks (``fcntl.flock``). Shared by every process on one host.
- ``redis://host:port/db`` (extra ``redis``; :mod:`ibkr_provider.client.redis_store`): one
  Redis key per session, a Redis lock with expiry, and pacing state updated atomically in Redis.
  Shared across hosts (CeleryExecutor).
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
from urllib.parse import urlsplit

from ibkr_provider.client.errors import IbkrConfigError, IbkrErrorCode, IbkrSessionError
from ibkr_provider.client.fields import redacted_url
from ibkr_provider.client.locking import flock, locked, write_private_atomically
from ibkr_provider.client.record import Cipher, SessionRecord

log = logging.getLogger(__name__)

#: How long a process waits for another process's renewal before giving up.
LOCK_TIMEOUT_SECONDS = 120.0


def lock_timeout(key: str, timeout: float) -> IbkrSessionError:
    return IbkrSessionError(
        f"timed out after {timeout:g} s waiting for the lock {key}", code=IbkrErrorCode.LOCK_TIMEOUT
    )


class Lease:
    """A held lock. File and memory locks are held until released; a Redis lease
    (:class:`~ibkr_provider.client.redis_store.RedisLease`) can lapse, and says so."""

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


#: Whether this process has said that a shared record could not be read (said once).
_unreadable_said = threading.Event()


def _say_unreadable(what: str, error: Exception) -> None:
    """Warn once per process: an unreadable record silently meant a new login each time, and
    hosts with different Fernet keys kept taking the session from each other."""
    if _unreadable_said.is_set():
        return
    _unreadable_said.set()
    log.warning(
        "[ibkr-session-record-unreadable] the shared IBKR %s could not be read (%s): this process "
        "opens a session of its own instead. Usually another host wrote it with a different [core] "
        "fernet_key (every host must use the same one), or the record is corrupt. Said once per process.",
        what,
        type(error).__name__,
    )


class SessionStore(ABC):
    """A place for session records, their locks and the shared pacing state."""

    def __init__(self, cipher: Cipher | None = None) -> None:
        #: How many shared records this store could not read (decrypt or parse); the hook's
        #: Test reports it.
        self.unreadable = 0
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
        except Exception as exc:  # any decryption or parsing failure: an unreadable record
            self.unreadable += 1
            _say_unreadable("session record", exc)
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
        except Exception as exc:  # a consent kept by a host with another Fernet key
            self.unreadable += 1
            _say_unreadable("pending consent", exc)
            return None

    @abstractmethod
    def _put(self, key: str, data: bytes, ttl_seconds: float) -> None: ...

    @abstractmethod
    def _pop(self, key: str) -> bytes | None: ...

    @abstractmethod
    def save(self, key: str, record: SessionRecord) -> None:
        """Store the record; readers never see a half-written one."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Forget the record (after a logout: its tokens must not outlive it)."""

    @abstractmethod
    def read_marker(self, key: str) -> str | None:
        """A short shared text (which session holds a user's brokerage session), or None."""

    @abstractmethod
    def write_marker(self, key: str, value: str) -> None:
        """Set the shared text under ``key`` (every process sees it)."""

    def close(self) -> None:
        """Release what the store holds open (descriptors, connections); safe to call twice."""
        return None

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

    def delete(self, key: str) -> None:
        for suffix in ("session", "used"):
            self._path(key, suffix).unlink(missing_ok=True)
        self._loaded.pop(key, None)

    def read_marker(self, key: str) -> str | None:
        try:
            return self._path(key, "marker").read_text() or None
        except FileNotFoundError:
            return None

    def write_marker(self, key: str, value: str) -> None:
        write_private_atomically(self._path(key, "marker"), value.encode())

    def close(self) -> None:
        """Close this process's pacing descriptors (each client opened one per bucket)."""
        with self._pace_guard:
            for pid, fd in self._pace_fds.values():
                if pid == os.getpid():
                    os.close(fd)
            self._pace_fds.clear()

    def _put(self, key: str, data: bytes, ttl_seconds: float) -> None:
        expires = repr(time.time() + ttl_seconds).encode()
        write_private_atomically(self._path(key, "stash"), expires + b"\n" + data)
        self._sweep_stashes()

    def _sweep_stashes(self) -> None:
        """Delete expired stashes: a consent the user abandoned is never taken, and its file
        would stay forever. Run when a new one is kept (rare: one per consent started)."""
        now = time.time()
        for path in self.directory.glob("*.stash"):
            try:
                with path.open("rb") as handle:
                    expires = float(handle.readline())
            except (OSError, ValueError):
                continue
            if expires < now:
                path.unlink(missing_ok=True)

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
        from ibkr_provider.client.redis_store import RedisSessionStore

        return RedisSessionStore(text, cipher)
    raise IbkrConfigError(
        "session_cache",
        f"{redacted_url(text)!r} is not a cache; use file, file:///dir, memory or redis://host:6379/0",
    )
