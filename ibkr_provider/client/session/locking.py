"""File primitives shared by the file session store and the file pacing state: an OS lock
that waits by sleeping, and private (0600) files replaced atomically."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ibkr_provider.client.errors import IbkrErrorCode, IbkrSessionError


@contextlib.contextmanager
def flock(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive OS lock on ``path`` (opened for the occasion)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with locked(fd, timeout, path.name):
            yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(fd: int, timeout: float, name: str) -> Iterator[None]:
    """Hold an exclusive OS lock on an open descriptor; sleeps between tries, never spins hot."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise IbkrSessionError(
                    f"timed out after {timeout:g} s waiting for the lock {name}",
                    code=IbkrErrorCode.LOCK_TIMEOUT,
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def write_private_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
