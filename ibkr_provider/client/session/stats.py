"""What one process did to the shared session: the figures logs, benchmarks and the single-flight
tests read (``client.sessions.stats``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SessionStats:
    """What this process did to the shared session (for logs and for proving single flight)."""

    #: Sessions this process opened (logins), and when the last one was ready (epoch seconds).
    opened: int = 0
    opened_at: float | None = None
    #: Repairs this process made after IBKR dropped the session.
    recovered: int = 0
    #: Seconds spent waiting for another process holding the session lock.
    lock_wait_seconds: float = 0.0
