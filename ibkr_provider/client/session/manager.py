"""The shared IBKR session: opened once, used by every process, renewed ahead of expiry,
recovered once when IBKR drops it.

IBKR allows one brokerage session per username ("A single username can only have one brokerage
session active at a time across all IB platforms", Web API documentation, Sessions), so the
session lives in a :class:`~ibkr_provider.client.session.stores.base.SessionStore` shared by every
process using the same (API host, client id, credential). Exactly one process opens or renews it,
under the store's lock (single flight), ahead of expiry and never in the middle of a request; the
others wait for the lock and reuse the result.

Opening follows IBKR's order: the auth strategy's steps, then the brokerage session
(:mod:`~ibkr_provider.client.session.brokerage`: ``ssodh/init`` and the accounts pre-flight),
unless another connection of this deployment holds the user's (:mod:`.holders`). Requests go
through the API's pipeline (:mod:`ibkr_provider.client.api.pipeline`), which asks this manager
for the session and for one recovery when IBKR drops it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from ibkr_provider.client.auth.fingerprint import credential_fingerprint
from ibkr_provider.client.config import AuthType, IbkrClientConfig
from ibkr_provider.client.errors import IbkrError, IbkrErrorCode, IbkrSessionError
from ibkr_provider.client.models.session import BrokerageSessionStatus
from ibkr_provider.client.session.brokerage import (
    STATUS_PATH,
    BrokerageEndpoints,
    competing_error,
    displacement_refused,
)
from ibkr_provider.client.session.holders import BrokerageHolders, describe, owner_of
from ibkr_provider.client.session.record import SessionRecord
from ibkr_provider.client.session.sender import SessionSender
from ibkr_provider.client.session.stats import SessionStats
from ibkr_provider.client.session.stores.base import Lease, SessionStore

log = logging.getLogger(__name__)


class SessionManager:
    """One username's shared session: single flight, opening, brokerage set-up, recovery,
    logout and named locks."""

    def __init__(
        self,
        config: IbkrClientConfig,
        *,
        sender: SessionSender,
        store: SessionStore,
        key: str,
        secret_sink: Callable[[str], None],
        on_ready: Callable[[], None],
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
    ) -> None:
        self.config = config
        #: The credentials' fingerprint: only a record carrying it is used by this process.
        self.fingerprint = credential_fingerprint(config)
        self.holders = BrokerageHolders(store, clock)
        self.owner_label = owner
        self.store = store
        self.key = key
        self.sender = sender
        self.brokerage = BrokerageEndpoints(sender, secret_sink)
        self._sink = secret_sink
        self._on_ready = on_ready
        self._clock = clock
        self._record: SessionRecord | None = None
        self._remembered: tuple[int, str | None, bool, str | None] | None = None
        self.stats = SessionStats()
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ the shared record
    def usable(self, record: SessionRecord | None) -> bool:
        """Ready, opened with this process's credentials (fingerprint), and not within
        ``session_refresh_lead`` (at most half its life) of expiry."""
        if record is None or not record.brokerage_ready or record.fingerprint != self.fingerprint:
            return False
        lifetime = record.expires_at - record.created_at
        lead = min(self.config.session_refresh_lead, lifetime / 2)
        return self._clock() < record.expires_at - lead

    def alive(self, record: SessionRecord) -> bool:
        """The record's tokens are valid and its brokerage session was set up."""
        return record.brokerage_ready and self._clock() < record.expires_at

    def remember(self, record: SessionRecord) -> SessionRecord:
        """Use ``record`` from now on; register its secrets and keep-alive when it is a session
        (or a state of it) this process has not seen yet. Every request passes here."""
        state = (record.generation, record.bearer, record.brokerage_ready, record.user)
        self._record = record
        if state == self._remembered:
            return record
        self._remembered = state
        self.sender.pacer.pace_as(record.user)
        for secret in (record.bearer, record.access_token):
            if secret:
                self._sink(secret)
        if record.brokerage_ready:
            self._on_ready()
        return record

    def session(self) -> SessionRecord:
        """The shared session, opened or renewed first when missing or near expiry."""
        with self._lock:
            # Always read the shared record (a small file read or Redis GET), so a renewal or
            # recovery by another process is adopted before this process sends anything.
            shared = self.store.load(self.key)
            if shared is not None and self.usable(shared):
                return self.remember(shared)
            asked = time.monotonic()
            with self.store.lock(self.key):
                self.stats.lock_wait_seconds += time.monotonic() - asked
                shared = self.store.load(self.key)
                if shared is not None and self.usable(shared):
                    return self.remember(shared)
                if shared is not None and shared.fingerprint != self.fingerprint and self.alive(shared):
                    log.warning(
                        "[ibkr-credentials-differ] the shared IBKR session was opened with other "
                        "credentials (fingerprint %s, this connection's %s: a rotated or mistyped key, or "
                        "another host's); opening one with this connection's",
                        shared.fingerprint,
                        self.fingerprint,
                    )
                record = self._open(previous=shared, release_previous=True)
                self.store.save(self.key, record)
            return self.remember(record)

    def lock(self, name: str, timeout: float) -> AbstractContextManager[Lease]:
        """A lock named ``name`` shared by every process of this session (e.g. order placement)."""
        return self.store.lock(f"{self.key}-{name}", timeout=timeout)

    # ------------------------------------------------------------------ opening
    def new_record(self, previous: SessionRecord | None) -> SessionRecord:
        """The auth strategy's login steps (they prove the credentials), as a record with no
        brokerage session yet; its user is learnt from IBKR (gateway mode: none, the gateway
        holds its own session), else the OAuth 2.0 username."""
        tokens = self.sender.auth.open(self.sender.transport, self.sender.stamp)
        record = SessionRecord(
            generation=(previous.generation + 1) if previous else 1,
            created_at=self._clock(),
            expires_at=tokens.expires_at if tokens.expires_at is not None else float("inf"),
            bearer=tokens.bearer,
            access_token=tokens.access_token.token if tokens.access_token else None,
            fingerprint=self.fingerprint,
            owner=owner_of(self.owner_label),
        )
        self.remember(record)
        if self.config.auth_type is not AuthType.GATEWAY:
            record.user = self.brokerage.user_of(record) or self.config.auth.username
        return self.remember(record)

    def claim_brokerage(self, record: SessionRecord, *, compete: bool, displace: bool) -> None:
        """Set up the brokerage session of ``record`` unless another live session of this
        deployment holds the user's (then refuse, unless ``displace``), and mark it the holder."""
        holder = self.holders.holder(record.user, besides=self.key)
        if holder is not None:
            if not displace:
                raise displacement_refused(holder)
            log.warning(
                "taking this IBKR user's brokerage session over from %s, as asked", describe(holder.owner)
            )
        self._establish_brokerage(record, compete=compete or displace)
        self.holders.mark(record.user, self.key)

    def _open(
        self, previous: SessionRecord | None, *, release_previous: bool, displace: bool = False
    ) -> SessionRecord:
        """Open a new session end to end. Caller holds the store lock.

        ``release_previous`` logs the previous, still valid session out, so the new brokerage
        session never competes with one this provider holds. When the previous session was
        opened with other credentials, the login steps come first: credentials IBKR refuses (a
        mistyped key) fail there and leave the working session alone. (A renewal with the same
        credentials logs out first: a new OAuth 1.0a live session token may invalidate the old
        one, UNCONFIRMED, and the old could then not be logged out.)
        """
        changed = previous is not None and previous.fingerprint != self.fingerprint
        record = self.new_record(previous) if changed else None
        alive = previous is not None and previous.bearer and self._clock() < previous.expires_at
        if release_previous and previous is not None and previous.brokerage_ready and alive:
            try:
                self.brokerage.logout(previous)
            except IbkrError as exc:
                log.info(
                    "logging out the previous IBKR session failed (%s); continuing", exc.code or exc.status
                )
        record = record or self.new_record(previous)
        self.claim_brokerage(
            record,
            compete=self.config.compete_on_login,
            displace=displace or self.config.displace_other_connections,
        )
        self.stats.opened += 1
        self.stats.opened_at = time.time()
        log.info(
            "IBKR session ready (%s mode, generation %d, %d account(s))",
            self.config.auth_type.value,
            record.generation,
            len((record.iserver_accounts or {}).get("accounts", [])),
        )
        return record

    def _establish_brokerage(self, record: SessionRecord, *, compete: bool) -> None:
        """``ssodh/init`` (unless the gateway already has a session) and the accounts pre-flight."""
        status: BrokerageSessionStatus | None = None
        if self.config.auth_type is AuthType.GATEWAY:
            status = self.brokerage.status(record)
        if status is None or not status.healthy:
            status = self.brokerage.init(record, compete=compete)
        self.brokerage.check_granted(status, self.holders.holder(record.user, besides=self.key))
        record.iserver_accounts = self.brokerage.accounts(record)
        record.brokerage_ready = True

    def reconnect(self) -> SessionRecord:
        """A new session that takes this IBKR user's brokerage session over from whoever holds
        it (another connection of this deployment, TWS): what a person asks for with
        ``ibkr-provider reconnect``, never done by the provider on its own."""
        with self._lock, self.store.lock(self.key):
            record = self._open(previous=self.store.load(self.key), release_previous=True, displace=True)
            self.store.save(self.key, record)
        return self.remember(record)

    # ------------------------------------------------------------------ recovery
    def recover(self, used: SessionRecord, error: IbkrSessionError) -> SessionRecord:
        """Repair the shared session once after ``error``; reuse another process's repair.

        ``POST /iserver/auth/status`` tells a dead SSO session (401: open a new one) from a lost
        brokerage tier (re-initialise it, never competing). A competing login is not fought.
        """
        with self._lock, self.store.lock(self.key):
            current = self.store.load(self.key)
            if current is not None and current.generation != used.generation and self.usable(current):
                log.info(
                    "IBKR session already recovered by another process (generation %d)", current.generation
                )
                return self.remember(current)
            record = current if current is not None and current.generation == used.generation else used
            log.warning("IBKR session not usable (%s); recovering it once", error.code or error.status)
            try:
                status: BrokerageSessionStatus | None = self.brokerage.status(record)
            except IbkrSessionError:
                status = None  # the SSO session itself is gone (401): open a new one
            if status is not None and status.competing:
                taker = self.holders.holder(record.user, besides=self.key)
                raise competing_error(f"/v1/api{STATUS_PATH}", status, took_over=True, taker=taker) from error
            if status is None:
                record = self._open(previous=record, release_previous=False)
            else:
                record.generation += 1
                record.brokerage_ready = False
                record.portfolio_accounts = None
                if status.authenticated and error.code is IbkrErrorCode.ACCOUNTS_PREFLIGHT:
                    record.iserver_accounts = self.brokerage.accounts(record)
                    record.brokerage_ready = True
                else:
                    self._establish_brokerage(record, compete=False)
                    self.holders.mark(record.user, self.key)
            self.store.save(self.key, record)
            self.stats.recovered += 1
            return self.remember(record)

    # ------------------------------------------------------------------ keep-alive and logout
    def idle_record(self) -> SessionRecord | None:
        """The shared record when no process used it for ``tickle_interval`` seconds and it is
        still usable; keep-alive tickles only such a session and never logs in."""
        idle = self._clock() - self.store.last_used(self.key)
        record = self.store.load(self.key)
        if idle < self.config.tickle_interval or record is None or not self.usable(record):
            return None
        return record

    def logout(self) -> None:
        """``POST /logout``: end the shared IBKR session for every process using it, and delete
        the shared record (its bearer or live session token must not outlive the session)."""
        with self._lock, self.store.lock(self.key):
            record = self.store.load(self.key) or self._record
            if record is not None and record.brokerage_ready:
                self.brokerage.logout(record)
            self.store.delete(self.key)
            self._record = None
            self._remembered = None

    @property
    def current(self) -> SessionRecord | None:
        """The record this process last used (None before the first request)."""
        return self._record
