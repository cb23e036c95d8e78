"""The shared session record: what every process of one IBKR username reads and renews.

It holds the SSO bearer and the access token, their expiry, a generation number, whether the
brokerage session is ready, and the cached pre-flight answers. It never holds the private key or
a signed assertion. Stores encrypt it at rest with a :class:`Cipher` (Airflow's Fernet).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol


class Cipher(Protocol):
    """Symmetric encryption for records at rest (Airflow's Fernet satisfies it)."""

    def encrypt(self, msg: bytes) -> bytes: ...

    def decrypt(self, msg: bytes, ttl: int | None = None) -> bytes: ...


@dataclass
class SessionRecord:
    """The shared state of one IBKR session.

    ``generation`` grows with every renewal or recovery, so a process that failed with an
    older generation knows another process already repaired the session and just reuses it.
    """

    generation: int
    created_at: float
    #: Renew before this (the access token's expiry; infinity in gateway mode).
    expires_at: float
    bearer: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    brokerage_ready: bool = False
    #: Cached ``GET /iserver/accounts`` answer: the pre-flight IBKR requires once per session.
    iserver_accounts: dict[str, Any] | None = field(default=None, repr=False)
    #: Cached ``GET /portfolio/accounts`` answer (IBKR paces it at 1 per 5 s) and when it was read.
    portfolio_accounts: list[Any] | None = field(default=None, repr=False)
    portfolio_accounts_at: float = 0.0
    #: SHA-256 of the credentials the session was opened with (see ``fingerprint``): a process
    #: whose credentials differ does not use it.
    fingerprint: str | None = None
    #: Who opened it: connection id, host, process id, when (names the holder in errors).
    owner: dict[str, Any] | None = None
    #: IBKR's user id of the session (``/tickle``'s ``userId``), when IBKR said it.
    user: str | None = None

    def to_bytes(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionRecord:
        values = json.loads(data)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def session_key(base_url: str, client_id: str | None, credential: str | None) -> str:
    """A stable, non-identifying key for (base URL, client id, credential)."""
    raw = "\x1f".join((base_url, client_id or "", credential or ""))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]
