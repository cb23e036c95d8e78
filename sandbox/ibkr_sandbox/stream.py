"""The websocket side of the sandbox: which sockets are open and the faults a test asks of them.

A socket's push loop (``routes/stream.py``) reads the shared state every ``ws_push_interval``
seconds and sends what changed; a fault set here is taken by the loop at its next turn, so the
control plane (plain request handlers in a worker thread) never touches a socket itself.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

#: What a test can do to the open sockets: close the TCP connection without a close frame
#: (``drop``), keep the socket open but send nothing more (``silence``), send one frame that is
#: not JSON (``malformed``), or close with an error code and reason (``close``).
FAULTS = ("drop", "silence", "malformed", "close")


@dataclass
class StreamConnection:
    """One open socket: its login and the fault waiting for its loop."""

    credential: str
    fault: str | None = None
    close_code: int = 1011
    close_reason: str = ""


@dataclass
class StreamRegistry:
    """The open sockets of one sandbox."""

    connections: list[StreamConnection] = field(default_factory=list)
    opened: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, connection: StreamConnection) -> None:
        with self.lock:
            self.connections.append(connection)
            self.opened += 1

    def remove(self, connection: StreamConnection) -> None:
        with self.lock:
            if connection in self.connections:
                self.connections.remove(connection)

    def inject(self, fault: str, close_code: int = 1011, close_reason: str = "") -> int:
        """Set ``fault`` on every open socket; returns how many."""
        if fault not in FAULTS:
            raise ValueError(f"unknown websocket fault {fault!r}; known: {list(FAULTS)}")
        with self.lock:
            for connection in self.connections:
                connection.fault, connection.close_code, connection.close_reason = (
                    fault,
                    close_code,
                    close_reason,
                )
            return len(self.connections)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {"open": len(self.connections), "opened": self.opened}
