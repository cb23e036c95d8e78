"""The sandbox's bookkeeping that every request touches, each part with a lock of its own so that
counting a request never waits for the book: the counters ``GET /__sandbox__/stats`` reports and
the queue of injected faults."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

#: Reported first and as 0 when nothing has counted them yet.
HEADLINE_COUNTERS = (
    "token_requests",
    "tokens_issued",
    "sso_sessions",
    "ssodh_inits",
    "requests_total",
    "http_401",
    "http_429",
)


class Counters:
    """Named request counters and per-path request counts, safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._paths: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def arrived(self, method: str, path: str) -> None:
        """One request arrived (``requests_total`` and its ``METHOD /path``)."""
        with self._lock:
            self._counts["requests_total"] += 1
            self._paths[f"{method} {path}"] += 1

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self._paths.clear()

    def dump(self) -> tuple[dict[str, int], dict[str, int]]:
        """The counts and per-path counts, to be kept across a restart (:meth:`load`)."""
        with self._lock:
            return dict(self._counts), dict(self._paths)

    def load(self, dumped: tuple[dict[str, int], dict[str, int]]) -> None:
        counts, paths = dumped
        with self._lock:
            self._counts = Counter(counts)
            self._paths = Counter(paths)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {k: self._counts.get(k, 0) for k in HEADLINE_COUNTERS}
            out.update({k: v for k, v in self._counts.items() if k not in out})
            out["paths"] = dict(self._paths)
            return out


@dataclass
class Fault:
    """An injected failure for the next ``remaining`` requests matching ``method``/``path``.

    ``path`` is a full request path (``/v1/api/portfolio/accounts``); a trailing ``*`` makes it
    a prefix. Kinds: an HTTP status (401, 429, 500, 502, 503, 504), ``drop`` (close the
    connection without an answer), ``drop_after`` (handle the request, then close the connection
    without its answer), ``delay`` (answer normally after ``delay`` seconds), ``delay_after``
    (handle the request at once, answer ``delay`` seconds later), ``stale`` (answer 200 with
    ``body`` instead of the truth, e.g. an order list that lags behind) or ``malformed`` (the
    truth in the malformed shape ``body`` names: :mod:`ibkr_sandbox.malformed`).
    """

    path: str
    kind: str
    remaining: int = 1
    method: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    body: Any = None

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path


class FaultQueue:
    """The injected faults, consumed one use at a time by matching requests."""

    def __init__(self, counters: Counters) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._counters = counters

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def listed(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dataclasses.asdict(f) for f in self._faults]

    def take(self, method: str, path: str) -> Fault | None:
        """The first matching fault, with one use consumed (counted as ``faults_fired``)."""
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    break
            else:
                return None
        self._counters.add("faults_fired")
        return fault
