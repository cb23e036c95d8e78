"""The shared IBKR session: opened once, used by every process, renewed ahead of expiry,
recovered once when IBKR drops it.

IBKR allows one brokerage session per username ("A single username can only have one brokerage
session active at a time across all IB platforms", Web API documentation, Sessions), so the
session lives in a :class:`~ibkr_provider.client.session.stores.base.SessionStore` shared by every process
using the same (API host, client id, credential). Exactly one process opens or renews it, under
the store's lock (single flight), ahead of expiry and never in the middle of a request; the
others wait for the lock and reuse the result.

Opening follows IBKR's order: the auth strategy's steps, then ``POST /iserver/auth/ssodh/init``
(the brokerage session every ``/iserver`` call needs) and the ``GET /iserver/accounts``
pre-flight, which IBKR requires "before modifying an order or querying open orders" and before
market data. ``GET /sso/validate`` is not part of it: IBKR paces it at one call per minute with a
10-15 minute penalty box, and the ``ssodh/init`` answer already proves the SSO session.
``GET /portfolio/accounts`` "must be called prior to calling other /portfolio endpoints"; its
answer is shared for five minutes (IBKR paces it at 1 per 5 s).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from ibkr_provider.client.auth.base import AuthStrategy
from ibkr_provider.client.auth.fingerprint import credential_fingerprint
from ibkr_provider.client.config import AuthType, IbkrClientConfig
from ibkr_provider.client.errors import (
    IbkrCompetingSessionError,
    IbkrError,
    IbkrErrorCode,
    IbkrResponseError,
    IbkrSessionError,
)
from ibkr_provider.client.http.pacing import Pacer
from ibkr_provider.client.http.transport import HttpTransport
from ibkr_provider.client.models.session import BrokerageAccounts, BrokerageSessionStatus
from ibkr_provider.client.session.holders import BrokerageHolders, describe, owner_of
from ibkr_provider.client.session.record import SessionRecord
from ibkr_provider.client.session.stores.base import Lease, SessionStore

log = logging.getLogger(__name__)

#: How long the shared /portfolio/accounts answer is reused (IBKR paces it at 1 per 5 s).
PORTFOLIO_ACCOUNTS_TTL_SECONDS = 300.0
#: A process records "session used" in the store at most this often (it is a write).
USE_MARK_INTERVAL_SECONDS = 5.0
#: The brokerage-session status endpoint (IBKR: POST /iserver/auth/status).
STATUS_PATH = "/iserver/auth/status"
#: Requests that place, modify or confirm orders: never retried blindly.
_ORDER_WRITES = re.compile(r"^/iserver/(account/[^/]+/orders?(/.*)?|reply/.+)$")

COMPETING_ADVICE = (
    "log out there, or use a second IBKR username for the API (IBKR allows one brokerage session per "
    "username)"
)
#: How a person moves the brokerage session back on purpose (README, troubleshooting).
RECONNECT_ADVICE = "run `ibkr-provider reconnect <connection id>` for the connection that should hold it"


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


def competing_error(
    endpoint: str, status: BrokerageSessionStatus, *, took_over: bool, taker: SessionRecord | None = None
) -> IbkrCompetingSessionError:
    """The one wording of "another login holds the brokerage session": naming the connection of
    this deployment that holds it when the shared store knows (``taker``), before blaming TWS."""
    verb = "took over" if took_over else "holds"
    if taker is not None:
        return IbkrCompetingSessionError(
            f"{describe(taker.owner)} of this deployment {verb} this IBKR user's brokerage session; "
            f"the provider does not take it back by itself. Use that connection, or {RECONNECT_ADVICE}",
            endpoint=endpoint,
            ibkr_error=status.message or status.fail or None,
            code=IbkrErrorCode.COMPETING,
            hint="which connections of this deployment log in as the same IBKR user",
        )
    return IbkrCompetingSessionError(
        f"another login for this IBKR username (TWS, IBKR Mobile or Client Portal) {verb} the brokerage "
        f"session; the provider does not take it back. {COMPETING_ADVICE}; to take it back, "
        f"{RECONNECT_ADVICE}",
        endpoint=endpoint,
        ibkr_error=status.message or status.fail or None,
        code=IbkrErrorCode.COMPETING,
    )


def displacement_refused(holder: SessionRecord) -> IbkrCompetingSessionError:
    """This connection would displace another connection's brokerage session, and does not."""
    return IbkrCompetingSessionError(
        f"{describe(holder.owner)} of this deployment holds this IBKR user's brokerage session (IBKR "
        "allows one per user); this connection would displace it and does not. Use that connection "
        f"for this work, set displace_other_connections on this one, or {RECONNECT_ADVICE}",
        code=IbkrErrorCode.COMPETING,
        hint="which connections of this deployment log in as the same IBKR user",
        permanent=True,
    )


class SessionManager:
    """One username's shared session: single flight, opening, brokerage set-up, recovery,
    logout, named locks and the pre-flight caches. The client's endpoint groups reach IBKR only
    through :meth:`call`."""

    def __init__(
        self,
        config: IbkrClientConfig,
        *,
        auth: AuthStrategy,
        transport: HttpTransport,
        store: SessionStore,
        key: str,
        pacer: Pacer,
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
        self._auth = auth
        self._transport = transport
        self._pacer = pacer
        self._sink = secret_sink
        self._on_ready = on_ready
        self._clock = clock
        self._record: SessionRecord | None = None
        self._remembered: tuple[int, str | None, bool, str | None] | None = None
        self._last_mark = 0.0
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

    def _remember(self, record: SessionRecord) -> SessionRecord:
        """Use ``record`` from now on; register its secrets and keep-alive when it is a session
        (or a state of it) this process has not seen yet. Every request passes here."""
        state = (record.generation, record.bearer, record.brokerage_ready, record.user)
        self._record = record
        if state == self._remembered:
            return record
        self._remembered = state
        self._pacer.pace_as(record.user)
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
                return self._remember(shared)
            asked = time.monotonic()
            with self.store.lock(self.key):
                self.stats.lock_wait_seconds += time.monotonic() - asked
                shared = self.store.load(self.key)
                if shared is not None and self.usable(shared):
                    return self._remember(shared)
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
            return self._remember(record)

    def lock(self, name: str, timeout: float) -> AbstractContextManager[Lease]:
        """A lock named ``name`` shared by every process of this session (e.g. order placement)."""
        return self.store.lock(f"{self.key}-{name}", timeout=timeout)

    # ------------------------------------------------------------------ opening
    def alive(self, record: SessionRecord) -> bool:
        """The record's tokens are valid and its brokerage session was set up."""
        return record.brokerage_ready and self._clock() < record.expires_at

    def new_record(self, previous: SessionRecord | None) -> SessionRecord:
        """The auth strategy's login steps (they prove the credentials), as a record with no
        brokerage session yet."""
        tokens = self._auth.open(self._transport, self._stamp)
        record = SessionRecord(
            generation=(previous.generation + 1) if previous else 1,
            created_at=self._clock(),
            expires_at=tokens.expires_at if tokens.expires_at is not None else float("inf"),
            bearer=tokens.bearer,
            access_token=tokens.access_token.token if tokens.access_token else None,
            fingerprint=self.fingerprint,
            owner=owner_of(self.owner_label),
        )
        self._remember(record)
        record.user = self.identify(record)
        return self._remember(record)

    def identify(self, record: SessionRecord) -> str | None:
        """IBKR's user id of the session (``/tickle``'s ``userId``), else the OAuth 2.0
        username; None in gateway mode (the gateway holds its own session) or when unknown."""
        if self.config.auth_type is AuthType.GATEWAY:
            return None
        try:
            answer = self.send_on(record, "POST", "/tickle")
        except IbkrError as exc:
            log.info("could not ask IBKR which user the session is (%s)", exc.code or exc.status)
            answer = None
        if isinstance(answer, Mapping):
            if answer.get("session"):
                self._sink(str(answer["session"]))
            if answer.get("userId") is not None:
                return str(answer["userId"])
        return self.config.auth.username

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
                self.send_on(previous, "POST", "/logout")
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

    def _stamp(self) -> int:
        """A paced send time in seconds for a login step (OAuth 1.0a signs it)."""
        return self._pacer.acquire("POST", "/oauth/live_session_token") // 1000

    def _status_of(self, record: SessionRecord) -> BrokerageSessionStatus:
        return BrokerageSessionStatus.from_json(self.send_on(record, "POST", STATUS_PATH))

    def _establish_brokerage(self, record: SessionRecord, *, compete: bool) -> None:
        """``ssodh/init`` (unless the gateway already has a session) and the accounts pre-flight."""
        status: BrokerageSessionStatus | None = None
        if self.config.auth_type is AuthType.GATEWAY:
            status = self._status_of(record)
        if status is None or not status.healthy:
            body = self.send_on(
                record, "POST", "/iserver/auth/ssodh/init", json_body={"publish": True, "compete": compete}
            )
            status = BrokerageSessionStatus.from_json(body)
        endpoint = "/v1/api/iserver/auth/ssodh/init"
        if status.competing or (
            not status.authenticated and "compet" in (status.fail + status.message).lower()
        ):
            taker = self.holders.holder(record.user, besides=self.key)
            error = competing_error(endpoint, status, took_over=False, taker=taker)
            if taker is None:
                error.message += "; or set compete_on_login to take it over when opening a session"
            error.args = (error.message,)
            raise error
        if not status.authenticated:
            reason = status.fail or status.message or "authenticated=false"
            raise IbkrSessionError(
                f"IBKR did not grant a brokerage session: {reason}",
                endpoint=endpoint,
                ibkr_error=status.fail or status.message or None,
                code=IbkrErrorCode.NOT_AUTHENTICATED,
            )
        record.iserver_accounts = dict(self.send_on(record, "GET", "/iserver/accounts"))
        record.brokerage_ready = True

    def reconnect(self) -> SessionRecord:
        """A new session that takes this IBKR user's brokerage session over from whoever holds
        it (another connection of this deployment, TWS): what a person asks for with
        ``ibkr-provider reconnect``, never done by the provider on its own."""
        with self._lock, self.store.lock(self.key):
            record = self._open(previous=self.store.load(self.key), release_previous=True, displace=True)
            self.store.save(self.key, record)
        return self._remember(record)

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
                return self._remember(current)
            record = current if current is not None and current.generation == used.generation else used
            log.warning("IBKR session not usable (%s); recovering it once", error.code or error.status)
            try:
                status: BrokerageSessionStatus | None = self._status_of(record)
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
                    record.iserver_accounts = dict(self.send_on(record, "GET", "/iserver/accounts"))
                    record.brokerage_ready = True
                else:
                    self._establish_brokerage(record, compete=False)
                    self.holders.mark(record.user, self.key)
            self.store.save(self.key, record)
            self.stats.recovered += 1
            return self._remember(record)

    # ------------------------------------------------------------------ requests
    def send_on(
        self,
        record: SessionRecord,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        """One paced ``/v1/api`` request on ``record``'s session, with the transport's retries
        and no session recovery (set-up and recovery use it)."""
        api_path = "/" + path.lstrip("/")
        url = f"{self.config.api_url}{api_path}"
        query = {key: str(value) for key, value in (params or {}).items()}

        def prepare() -> Mapping[str, str]:
            slot_ms = self._pacer.acquire(method, api_path)
            return self._auth.headers_for(
                record.bearer, method=method, url=url, query=query, timestamp=slot_ms // 1000
            )

        result = self._transport.send(
            method,
            url,
            params=params,
            json_body=json_body,
            idempotent=is_idempotent(method, api_path) if idempotent is None else idempotent,
            prepare=prepare,
        )
        self._mark_used()
        return result

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        """A ``/v1/api`` request on the shared session, recovered once if the session fails.
        The only way the endpoint groups reach IBKR."""
        record = self.session()
        try:
            return self.send_on(
                record, method, path, params=params, json_body=json_body, idempotent=idempotent
            )
        except IbkrCompetingSessionError:
            raise
        except IbkrSessionError as exc:
            record = self.recover(record, exc)
        if path.startswith("/portfolio/") and path != "/portfolio/accounts":
            self.portfolio_preflight(force=True)
        return self.send_on(record, method, path, params=params, json_body=json_body, idempotent=idempotent)

    def _mark_used(self) -> None:
        now = self._clock()
        if now - self._last_mark >= USE_MARK_INTERVAL_SECONDS:
            self._last_mark = now
            self.store.mark_used(self.key, now)

    # ------------------------------------------------------------------ pre-flights
    def iserver_preflight(self) -> BrokerageAccounts:
        """The ``/iserver/accounts`` answer of the shared session (read once, at set-up)."""
        record = self.session()
        if record.iserver_accounts is None:
            record.iserver_accounts = dict(self.call("GET", "/iserver/accounts"))
        return BrokerageAccounts.from_json(record.iserver_accounts)

    def _fresh_portfolio_accounts(self, record: SessionRecord | None) -> list[Any] | None:
        if record is None or record.portfolio_accounts is None:
            return None
        if self._clock() - record.portfolio_accounts_at >= PORTFOLIO_ACCOUNTS_TTL_SECONDS:
            return None
        return record.portfolio_accounts

    def portfolio_preflight(self, *, force: bool = False) -> list[Any]:
        """``GET /portfolio/accounts`` once per session and five minutes, shared by every
        process (single flight); ``force`` reads it again."""
        cached = None if force else self._fresh_portfolio_accounts(self.session())
        if cached is not None:
            return cached
        with self._lock, self.store.lock(self.key):
            cached = None if force else self._fresh_portfolio_accounts(self.store.load(self.key))
            if cached is not None:
                return cached
            payload = self.call("GET", "/portfolio/accounts")
            if not isinstance(payload, list):
                raise IbkrResponseError(
                    "/portfolio/accounts did not answer with a list", endpoint="/v1/api/portfolio/accounts"
                )
            # Under the lock the stored record is authoritative (a recovery inside the call saved it).
            target = self.store.load(self.key) or self.session()
            target.portfolio_accounts = payload
            target.portfolio_accounts_at = self._clock()
            self.store.save(self.key, target)
            self._remember(target)
            return payload

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
                self.send_on(record, "POST", "/logout")
            self.store.delete(self.key)
            self._record = None
            self._remembered = None

    @property
    def default_account(self) -> str | None:
        """The connection's ``account_id``, for calls that name none."""
        return self.config.account_id

    @property
    def current(self) -> SessionRecord | None:
        """The record this process last used (None before the first request)."""
        return self._record


def is_idempotent(method: str, path: str) -> bool:
    """Whether repeating the request after an ambiguous failure is harmless: every read, and
    every write except placing, modifying or confirming an order."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return True
    return _ORDER_WRITES.match(path) is None
