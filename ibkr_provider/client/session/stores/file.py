"""The ``file`` session store: files (mode 0600) in a directory, guarded by OS file locks
(``fcntl.flock``); shared by every process on one host."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ibkr_provider.client.errors import IbkrConfigError
from ibkr_provider.client.session.locking import flock, locked, write_private_atomically
from ibkr_provider.client.session.record import Cipher, SessionRecord
from ibkr_provider.client.session.stores.base import LOCK_TIMEOUT_SECONDS, Lease, SessionStore


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
