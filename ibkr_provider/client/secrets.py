"""Hand every secret to a log masker so that overlapping secrets are masked whole.

A log masker replaces each registered secret with ``***``, trying them in no defined order
(Airflow joins them into one regular expression from a set). When one secret contains another
(IBKR may derive a session id from a token; a key contains its lines), a masker that matches the
shorter one first leaves the rest of the longer one in the log. So besides each secret, the
pieces of the longer secret around the shorter one are registered too: in any order, every
character of both ends up masked. (A PEM key and its lines are the exception: the lines tile the
key, so they need no pieces; splitting a key by its lines would register ever more fragments.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: Airflow does not mask values shorter than this (``[logging] min_length_masked_secret``).
MIN_MASKED_LENGTH = 5


class SecretRegistry:
    """A secret sink: ``registry(secret)`` passes ``secret`` (and the pieces it leaves in the
    secrets it overlaps) to ``register`` once each."""

    def __init__(self, register: Callable[[str], None]) -> None:
        self._register = register
        self._secrets: set[str] = set()
        self._registered: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, secret: str) -> None:
        # Too short to mask (a PEM's last line can be "Aw=="): registering it only made Airflow
        # warn "Skipping masking for a secret as it's too short" in every IBKR task log.
        if len(secret) < MIN_MASKED_LENGTH:
            return
        with self._lock:
            if secret in self._secrets:
                return
            pieces = [secret]
            for other in self._secrets:
                longer, shorter = (secret, other) if len(secret) >= len(other) else (other, secret)
                if shorter in longer and "\n" not in longer:
                    pieces.extend(p for p in longer.split(shorter) if len(p) >= MIN_MASKED_LENGTH)
            self._secrets.add(secret)
            fresh = [p for p in dict.fromkeys(pieces) if p not in self._registered]
            self._registered.update(fresh)
        for piece in fresh:
            self._register(piece)
