"""Where the shared IBKR session lives, so every task process uses one session per username.

IBKR allows one brokerage session per username: if every Airflow task logged in by itself,
parallel tasks would knock each other out ("competing") and each would pace itself alone.
A :class:`SessionStore` holds one :class:`~ibkr_provider.client.session.record.SessionRecord` per
(base URL, client id, credential), exclusive locks for single-flight renewal and order
placement, and the pacing state shared by all processes.

Backends (connection field ``session_cache``):

- ``file`` (default) or ``file:///some/dir``: files (mode 0600) in a directory, guarded by OS
  file locks (``fcntl.flock``). Shared by every process on one host.
- ``redis://host:port/db`` (extra ``redis``; :mod:`ibkr_provider.client.session.stores.redis_store`): one
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
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator

from ibkr_provider.client.errors import IbkrErrorCode, IbkrSessionError
from ibkr_provider.client.session.record import Cipher, SessionRecord

log = logging.getLogger(__name__)

#: How long a process waits for another process's renewal before giving up.
LOCK_TIMEOUT_SECONDS = 120.0


def lock_timeout(key: str, timeout: float) -> IbkrSessionError:
    return IbkrSessionError(
        f"timed out after {timeout:g} s waiting for the lock {key}", code=IbkrErrorCode.LOCK_TIMEOUT
    )


class Lease:
    """A held lock. File and memory locks are held until released; a Redis lease
    (:class:`~ibkr_provider.client.session.stores.redis_store.RedisLease`) can lapse, and says so."""

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

    def read_secret(self, key: str) -> str | None:
        """A small secret kept under ``key`` by :meth:`write_secret` (decrypted), or None."""
        sealed = self.read_marker(f"{key}-secret")
        if sealed is None:
            return None
        try:
            return (self._cipher.decrypt(sealed.encode()) if self._cipher else sealed.encode()).decode()
        except Exception as exc:  # kept by a host with another Fernet key
            self.unreadable += 1
            _say_unreadable("kept secret", exc)
            return None

    def write_secret(self, key: str, value: str) -> None:
        """Keep a small secret (a user's rotated refresh token) with no expiry, encrypted when
        there is a cipher (Fernet tokens are text)."""
        data = value.encode()
        self.write_marker(f"{key}-secret", (self._cipher.encrypt(data) if self._cipher else data).decode())

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
