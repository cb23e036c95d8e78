"""Pacing state kept in files, so every process on a host draws from one budget.

pyrate-limiter does the rate maths (GCRA) and brings in-memory and Redis state stores; this
module adds the file one, making its read-modify-write atomic across processes under an OS lock.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ibkr_provider.client.locking import flock, write_private_atomically

#: How long a pacing update waits for another process's update (normally microseconds).
LOCK_TIMEOUT_SECONDS = 120.0


class FileStateStore:
    """pyrate-limiter state for one pacing bucket, in a 0600 JSON file under an OS lock.

    pyrate-limiter does the rate maths (GCRA); this class only makes its read-modify-write
    atomic across processes, which its in-memory and multiprocessing stores cannot.
    """

    is_async = False

    def __init__(self, path: Path) -> None:
        from pyrate_limiter import WallClock

        self.path = path
        self.default_clock = WallClock()

    def _load(self, algorithm: Any, rates: Any) -> Any:
        try:
            stored = tuple(json.loads(self.path.read_bytes()))
        except (OSError, ValueError):
            return algorithm.initial(rates)
        return stored if len(stored) == len(rates) else algorithm.initial(rates)

    def check(self, algorithm: Any, rates: Any, now: int, weight: int) -> Any:
        with flock(self.path.with_name(self.path.name + ".lock"), LOCK_TIMEOUT_SECONDS):
            new_state, decision = algorithm.step(rates, self._load(algorithm, rates), now, weight)
            if decision.allowed:
                write_private_atomically(self.path, json.dumps(list(new_state)).encode())
            return decision

    def read(self, algorithm: Any, rates: Any) -> Any:
        return self._load(algorithm, rates)

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Nothing to release: every check opens and closes its own lock file."""
