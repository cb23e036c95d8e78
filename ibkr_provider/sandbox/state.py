"""In-memory state of the sandbox: registered client keys, tokens, sessions, the book, counters.

All mutation happens under one lock; FastAPI runs sync endpoints in a thread pool.
"""

from __future__ import annotations

import copy
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ibkr_provider.sandbox.seed import SANDBOX_CREDENTIAL, SeedBook, build_seed_book


@dataclass
class SandboxSettings:
    """Behaviour knobs; every default is documented in docs/sandbox.md."""

    access_token_lifetime: float = 3600.0
    #: IBKR's maximum client-assertion lifetime is UNCONFIRMED; working clients use 20-600 s.
    max_assertion_lifetime: float = 600.0
    clock_skew: float = 30.0
    #: Observed ssoExpires of ~10 minutes, reset by activity (shared reference section 3).
    sso_idle_timeout: float = 600.0
    gateway: bool = False


@dataclass
class AccessTokenRecord:
    client_id: str
    expires_at: float


@dataclass
class SsoSessionRecord:
    """One SSO (read-only) session; ``brokerage`` is the /iserver tier on top of it."""

    session_id: str
    client_id: str
    credential: str
    ip: str
    created_at: float
    last_active: float
    brokerage: bool = False
    competing: bool = False
    iserver_accounts_queried: bool = False
    portfolio_accounts_queried: bool = False


@dataclass
class SandboxState:
    settings: SandboxSettings
    #: client id -> {kid -> public key PEM}
    client_keys: dict[str, dict[str, str]]
    credentials: dict[str, list[str]] = field(default_factory=dict)
    book: SeedBook = field(default_factory=build_seed_book)
    access_tokens: dict[str, AccessTokenRecord] = field(default_factory=dict)
    sessions: dict[str, SsoSessionRecord] = field(default_factory=dict)
    #: credential -> session id holding the brokerage session (IBKR allows one per username)
    brokerage_holder: dict[str, str] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    path_counts: Counter[str] = field(default_factory=Counter)
    lock: threading.RLock = field(default_factory=threading.RLock)
    started_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self._pristine_book = copy.deepcopy(self.book)
        if not self.credentials:
            self.credentials = {SANDBOX_CREDENTIAL: list(self.book.accounts)}
        if self.settings.gateway:
            self._open_gateway_session()

    def _open_gateway_session(self) -> None:
        now = time.time()
        record = SsoSessionRecord(
            session_id="gateway",
            client_id="gateway",
            credential=SANDBOX_CREDENTIAL,
            ip="127.0.0.1",
            created_at=now,
            last_active=now,
        )
        self.sessions[record.session_id] = record

    def reset(self) -> None:
        """Restore the seeded book, drop every token and session, zero the counters."""
        with self.lock:
            self.book = copy.deepcopy(self._pristine_book)
            self.access_tokens.clear()
            self.sessions.clear()
            self.brokerage_holder.clear()
            self.counters.clear()
            self.path_counts.clear()
            if self.settings.gateway:
                self._open_gateway_session()

    # -------------------------------------------------------------- tokens and sessions
    def issue_access_token(self, client_id: str) -> tuple[str, float]:
        with self.lock:
            token = secrets.token_urlsafe(32)
            self.access_tokens[token] = AccessTokenRecord(
                client_id, time.time() + self.settings.access_token_lifetime
            )
            self.counters["tokens_issued"] += 1
            return token, self.settings.access_token_lifetime

    def access_token(self, token: str) -> AccessTokenRecord | None:
        with self.lock:
            record = self.access_tokens.get(token)
            if record is None or record.expires_at <= time.time():
                return None
            return record

    def open_sso_session(self, client_id: str, credential: str, ip: str) -> SsoSessionRecord:
        with self.lock:
            now = time.time()
            record = SsoSessionRecord(secrets.token_urlsafe(32), client_id, credential, ip, now, now)
            self.sessions[record.session_id] = record
            self.counters["sso_sessions"] += 1
            return record

    def live_session(self, session_id: str | None) -> SsoSessionRecord | None:
        """The session for a bearer (or the gateway's implicit one), if not idle-expired; touches it."""
        with self.lock:
            if self.settings.gateway:
                session_id = "gateway"
            record = self.sessions.get(session_id or "")
            if record is None:
                return None
            now = time.time()
            if now - record.last_active > self.settings.sso_idle_timeout:
                self.end_session(record.session_id)
                return None
            record.last_active = now
            return record

    def end_session(self, session_id: str) -> None:
        with self.lock:
            record = self.sessions.pop(session_id, None)
            if record and self.brokerage_holder.get(record.credential) == session_id:
                del self.brokerage_holder[record.credential]
            if self.settings.gateway and session_id == "gateway":
                self._open_gateway_session()

    def init_brokerage(self, record: SsoSessionRecord, compete: bool) -> None:
        """``ssodh/init``: one brokerage session per username; ``compete`` takes it over."""
        with self.lock:
            self.counters["ssodh_inits"] += 1
            holder = self.brokerage_holder.get(record.credential)
            if holder and holder != record.session_id and holder in self.sessions:
                if not compete:
                    record.competing = True
                    record.brokerage = False
                    return
                dropped = self.sessions[holder]
                dropped.brokerage = False
                dropped.competing = True
                dropped.iserver_accounts_queried = False
            self.brokerage_holder[record.credential] = record.session_id
            record.brokerage = True
            record.competing = False

    def stats(self) -> dict[str, Any]:
        with self.lock:
            keys = (
                "token_requests",
                "tokens_issued",
                "sso_sessions",
                "ssodh_inits",
                "requests_total",
                "http_401",
                "http_429",
            )
            out: dict[str, Any] = {k: self.counters.get(k, 0) for k in keys}
            out.update({k: v for k, v in self.counters.items() if k not in out})
            out["paths"] = dict(self.path_counts)
            out["active_sessions"] = len(self.sessions)
            return out
