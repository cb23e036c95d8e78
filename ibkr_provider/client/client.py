"""The IBKR Web API client: one shared session per username, pacing, retries, typed reads.

Session set-up follows IBKR's order (shared reference sections 2-3): the auth strategy's token
steps, then ``POST /iserver/auth/ssodh/init`` (the brokerage session every ``/iserver`` call
needs) and the ``GET /iserver/accounts`` pre-flight IBKR requires before trading or market
data. ``GET /sso/validate`` is deliberately not part of set-up: IBKR paces it at one call per
minute with a 10-15 minute penalty box for violators, and the ``ssodh/init`` answer already
proves the SSO session works. Portfolio reads are preceded once per
session by ``GET /portfolio/accounts``, which IBKR requires "prior to calling other /portfolio
endpoints".

The session is kept in a :class:`~ibkr_provider.client.session_store.SessionStore` shared by
every process using the same (base URL, client id, credential), because IBKR allows one
brokerage session per username. Exactly one process renews it (under the store's lock), ahead
of expiry and never in the middle of a request; the others wait and reuse the result.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ibkr_provider.client.auth import AuthStrategy, SecretSink, build_auth
from ibkr_provider.client.config import AuthType, IbkrClientConfig
from ibkr_provider.client.errors import (
    IbkrCompetingSessionError,
    IbkrError,
    IbkrErrorCode,
    IbkrResponseError,
    IbkrSessionError,
    IbkrValidationError,
)
from ibkr_provider.client.marketdata import MarketData
from ibkr_provider.client.models import (
    Account,
    AccountSummary,
    BrokerageAccounts,
    BrokerageSessionStatus,
    Ledger,
    PnlRow,
    Position,
    SsoValidation,
    TickleResult,
)
from ibkr_provider.client.orders import OrderService
from ibkr_provider.client.pacing import Pacer
from ibkr_provider.client.session_store import (
    Cipher,
    SessionRecord,
    SessionStore,
    build_session_store,
    session_key,
)
from ibkr_provider.client.transport import HttpTransport

log = logging.getLogger(__name__)

#: "One page contains a maximum of 100 positions" (IBKR, /portfolio/{accountId}/positions/{pageId}).
POSITIONS_PAGE_SIZE = 100
#: A bound on paging so a misbehaving server cannot loop a task forever (100,000 positions).
MAX_POSITION_PAGES = 1000
#: How long the shared /portfolio/accounts answer is reused (IBKR paces it at 1 per 5 s).
PORTFOLIO_ACCOUNTS_TTL_SECONDS = 300.0
#: A process records "session used" in the store at most this often (it is a write).
USE_MARK_INTERVAL_SECONDS = 5.0

_ACCOUNT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})
#: Requests that place, modify or confirm orders: never retried blindly.
_ORDER_PATHS = re.compile(r"^/iserver/(account/[^/]+/orders?(/.*)?|reply/.+)$")


def _ignore_secret(_: str) -> None:
    """Default secret sink for plain-Python use, where no log masker exists."""


def is_idempotent(method: str, path: str) -> bool:
    """Whether repeating the request after an ambiguous failure is harmless."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return True
    return _ORDER_PATHS.match(path) is None


class IbkrClient:
    """A client for one IBKR username at one API host.

    :param config: validated settings, see :meth:`IbkrClientConfig.from_mapping`.
    :param secret_sink: called with every token and signed assertion the client creates, so a
        host (the Airflow hook) can register them with its log masker before they could leak.
    :param store: where the shared session lives; built from ``config.session_cache`` if omitted.
    :param cipher: encrypts records the store writes to disk or Redis.
    """

    def __init__(
        self,
        config: IbkrClientConfig,
        *,
        secret_sink: SecretSink | None = None,
        transport: HttpTransport | None = None,
        store: SessionStore | None = None,
        cipher: Cipher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._sink: Callable[[str], None] = secret_sink or _ignore_secret
        self._transport = transport or HttpTransport(
            verify=config.verify, timeout=config.timeout, retry_policy=config.retry
        )
        self._auth: AuthStrategy = build_auth(config, secret_sink=self._sink)
        self._store = store or build_session_store(
            config.session_cache, default_dir=config.session_cache_dir, cipher=cipher
        )
        self._key = session_key(config.base_url, config.client_id, config.credential)
        self._pacer = Pacer(self._store, self._key, global_limit=config.effective_rate_limit, clock=clock)
        self._clock = clock
        self._record: SessionRecord | None = None
        self._last_mark = 0.0
        self._keepalive: _KeepAlive | None = None
        self._lock = threading.RLock()

    @property
    def store(self) -> SessionStore:
        return self._store

    @property
    def session_key(self) -> str:
        """The cache key of this client's session (base URL, client id, credential)."""
        return self._key

    @property
    def market_data(self) -> MarketData:
        """Contract search and snapshots (see :mod:`ibkr_provider.client.marketdata`)."""
        return MarketData(self)

    @property
    def orders(self) -> OrderService:
        """What-if, safe placement, status and cancel (see :mod:`ibkr_provider.client.orders`)."""
        return OrderService(self)

    # ------------------------------------------------------------------ shared session
    def _usable(self, record: SessionRecord | None) -> bool:
        if record is None or not record.brokerage_ready:
            return False
        lifetime = record.expires_at - record.created_at
        lead = min(self.config.session_refresh_lead, lifetime / 2)
        return self._clock() < record.expires_at - lead

    def _remember(self, record: SessionRecord) -> SessionRecord:
        for secret in (record.bearer, record.access_token):
            if secret:
                self._sink(secret)
        self._record = record
        if record.brokerage_ready:
            self._start_keepalive()
        return record

    def session(self) -> SessionRecord:
        """The shared session, opened or renewed first when missing or near expiry.

        Single flight: one process renews under the store's lock; the others wait for the
        lock and reuse its result.
        """
        with self._lock:
            # Always read the shared record (a small file read or Redis GET), so a renewal or
            # recovery by another process is adopted before this process sends anything.
            shared = self._store.load(self._key)
            if self._usable(shared):
                assert shared is not None
                return self._remember(shared)
            with self._store.lock(self._key):
                shared = self._store.load(self._key)
                if self._usable(shared):
                    assert shared is not None
                    return self._remember(shared)
                record = self._open_session(previous=shared, release_previous=True)
                self._store.save(self._key, record)
            return self._remember(record)

    def connect(self) -> BrokerageSessionStatus:
        """Make sure a usable shared session exists and return its brokerage status."""
        return BrokerageSessionStatus.from_json(self._call("POST", "/iserver/auth/status"))

    def _status_of(self, record: SessionRecord) -> BrokerageSessionStatus:
        return BrokerageSessionStatus.from_json(self._send("POST", "/iserver/auth/status", record))

    def _open_session(self, previous: SessionRecord | None, *, release_previous: bool) -> SessionRecord:
        """Open a new session end to end. Caller holds the store lock.

        ``release_previous`` logs the previous, still valid session out first, so the new
        brokerage session never competes with one this provider holds.
        """
        alive = previous is not None and previous.bearer and self._clock() < previous.expires_at
        if release_previous and previous is not None and previous.brokerage_ready and alive:
            try:
                self._send("POST", "/logout", previous)
            except IbkrError as exc:
                log.info(
                    "logging out the previous IBKR session failed (%s); continuing", exc.code or exc.status
                )
        tokens = self._auth.open(self._transport)
        now = self._clock()
        expires_at = tokens.access_token.expires_at if tokens.access_token else float("inf")
        record = SessionRecord(
            generation=(previous.generation + 1) if previous else 1,
            created_at=now,
            expires_at=expires_at,
            bearer=tokens.bearer,
            access_token=tokens.access_token.token if tokens.access_token else None,
        )
        self._remember(record)
        self._establish_brokerage(record, compete=self.config.compete_on_login)
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
            status = self._status_of(record)
        if status is None or not status.healthy:
            body = self._send(
                "POST", "/iserver/auth/ssodh/init", record, json_body={"publish": True, "compete": compete}
            )
            status = BrokerageSessionStatus.from_json(body)
        if status.competing or (
            not status.authenticated and "compet" in (status.fail + status.message).lower()
        ):
            raise IbkrCompetingSessionError(
                "another login for this IBKR username (TWS, IBKR Mobile or Client Portal) holds the "
                "brokerage session; log out there, use a second IBKR username for the API, or set "
                "compete_on_login",
                endpoint="/v1/api/iserver/auth/ssodh/init",
                ibkr_error=status.message or status.fail or None,
                code=IbkrErrorCode.COMPETING,
            )
        if not status.authenticated:
            reason = status.fail or status.message or "authenticated=false"
            raise IbkrSessionError(
                f"IBKR did not grant a brokerage session: {reason}",
                endpoint="/v1/api/iserver/auth/ssodh/init",
                ibkr_error=status.fail or status.message or None,
                code=IbkrErrorCode.NOT_AUTHENTICATED,
            )
        record.iserver_accounts = dict(self._send("GET", "/iserver/accounts", record))
        record.brokerage_ready = True

    def _recover(self, used: SessionRecord, error: IbkrSessionError) -> SessionRecord:
        """Repair the shared session once after ``error``; reuse another process's repair."""
        with self._lock, self._store.lock(self._key):
            current = self._store.load(self._key)
            if current is not None and current.generation != used.generation and self._usable(current):
                log.info(
                    "IBKR session already recovered by another process (generation %d)", current.generation
                )
                return self._remember(current)
            record = current if current is not None and current.generation == used.generation else used
            log.warning("IBKR session not usable (%s); recovering it once", error.code or error.status)
            try:
                status = self._status_of(record)
            except IbkrSessionError:
                status = None  # the SSO session itself is gone (401): open a new one
            if status is not None and status.competing:
                raise IbkrCompetingSessionError(
                    "another login for this IBKR username (TWS, IBKR Mobile or Client Portal) took over the "
                    "brokerage session; the provider does not take it back. Log out there or use a second "
                    "IBKR username for the API",
                    endpoint="/v1/api/iserver/auth/status",
                    ibkr_error=status.message or status.fail or None,
                    code=IbkrErrorCode.COMPETING,
                ) from error
            if status is None:
                record = self._open_session(previous=record, release_previous=False)
            else:
                # Our own SSO session is alive: re-initialise its brokerage tier without competing.
                record.generation += 1
                record.brokerage_ready = False
                record.portfolio_accounts = None
                if status.authenticated and error.code is IbkrErrorCode.ACCOUNTS_PREFLIGHT:
                    record.iserver_accounts = dict(self._send("GET", "/iserver/accounts", record))
                    record.brokerage_ready = True
                else:
                    self._establish_brokerage(record, compete=False)
            self._store.save(self._key, record)
            return self._remember(record)

    # ------------------------------------------------------------------ requests
    def _send(
        self,
        method: str,
        path: str,
        record: SessionRecord,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        url = f"{self.config.api_url}/{path.lstrip('/')}"
        api_path = "/" + path.lstrip("/")
        headers = self._auth.headers_for(record.bearer)

        def pace() -> None:
            self._pacer.acquire(method, api_path)

        result = self._transport.send(
            method,
            url,
            headers=headers,
            params=params,
            json_body=json_body,
            idempotent=is_idempotent(method, api_path) if idempotent is None else idempotent,
            before_attempt=pace,
        )
        self._mark_used()
        return result

    def _mark_used(self) -> None:
        now = self._clock()
        if now - self._last_mark >= USE_MARK_INTERVAL_SECONDS:
            self._last_mark = now
            self._store.mark_used(self._key, now)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        """A ``/v1/api`` call on the shared session, recovered once if the session fails."""
        record = self.session()
        try:
            return self._send(method, path, record, params=params, json_body=json_body, idempotent=idempotent)
        except IbkrCompetingSessionError:
            raise
        except IbkrSessionError as exc:
            record = self._recover(record, exc)
        if path.startswith("/portfolio/") and path != "/portfolio/accounts":
            self._portfolio_preflight(force=True)
        return self._send(method, path, record, params=params, json_body=json_body, idempotent=idempotent)

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        *,
        idempotent: bool | None = None,
    ) -> Any:
        """Call any ``/v1/api`` endpoint with the client's auth, pacing, retries, session
        recovery and errors.

        :param path: path below ``/v1/api``, e.g. ``/iserver/account/trades``.
        :param idempotent: whether an ambiguous failure may be retried; inferred when None
            (order placement, modification and replies are not).
        :return: the decoded JSON body.
        """
        verb = method.upper()
        if verb not in _METHODS:
            raise IbkrValidationError(
                "method", f"{method!r} is not an HTTP method; use one of {sorted(_METHODS)}"
            )
        if "://" in path or not path.strip():
            raise IbkrValidationError(
                "path", f"{path!r} must be a path below /v1/api such as '/portfolio/accounts'"
            )
        return self._call(
            verb, "/" + path.strip().lstrip("/"), params=params, json_body=json, idempotent=idempotent
        )

    # ------------------------------------------------------------------ session endpoints
    def sso_validate(self) -> SsoValidation:
        """``GET /sso/validate``: the read-only session's validity (IBKR paces it at 1/min)."""
        return SsoValidation.from_json(self._call("GET", "/sso/validate"))

    def auth_status(self) -> BrokerageSessionStatus:
        """``POST /iserver/auth/status``: the brokerage session state."""
        return BrokerageSessionStatus.from_json(self._call("POST", "/iserver/auth/status"))

    def brokerage_accounts(self) -> BrokerageAccounts:
        """The ``/iserver/accounts`` answer of the shared session (its pre-flight, done once)."""
        record = self.session()
        if record.iserver_accounts is None:
            record.iserver_accounts = dict(self._call("GET", "/iserver/accounts"))
        return BrokerageAccounts.from_json(record.iserver_accounts)

    def trades(self, days: int = 1, account_id: str | None = None) -> list[dict[str, Any]]:
        """``GET /iserver/account/trades``: executions of the last ``days`` days (IBKR allows at
        most 7 and paces the endpoint at 1 per 5 s). Raw rows, as IBKR sends them."""
        if not 1 <= days <= 7:
            raise IbkrValidationError("days", "IBKR returns trades for 1 to 7 days")
        self.brokerage_accounts()
        params: dict[str, Any] = {"days": days}
        if account_id:
            params["accountId"] = self._account(account_id)
        rows = self._call("GET", "/iserver/account/trades", params=params)
        if not isinstance(rows, list):
            raise IbkrResponseError("/iserver/account/trades did not answer with a list")
        return rows

    def pnl(self) -> dict[str, PnlRow]:
        """``GET /iserver/account/pnl/partitioned``: daily PnL per account (IBKR: 1 per 5 s)."""
        self.brokerage_accounts()
        return PnlRow.from_json(self._call("GET", "/iserver/account/pnl/partitioned"))

    def tickle(self) -> TickleResult:
        """``POST /tickle``: keep the session alive (IBKR expects about one call per minute)."""
        return self._tickle_result(self._call("POST", "/tickle"))

    def _tickle_result(self, payload: Any) -> TickleResult:
        """Parse a tickle answer; its session id is a secret for the masker."""
        result = TickleResult.from_json(payload)
        if result.session:
            self._sink(result.session)
        return result

    def logout(self) -> None:
        """``POST /logout``: end the shared IBKR session for every process using it."""
        with self._lock, self._store.lock(self._key):
            record = self._store.load(self._key) or self._record
            if record is not None and record.brokerage_ready:
                self._send("POST", "/logout", record)
                record.brokerage_ready = False
                record.expires_at = 0.0
                self._store.save(self._key, record)
            self._record = None

    def close(self) -> None:
        """Stop the keep-alive thread and release the HTTP pool (the IBKR session stays open
        for other processes)."""
        if self._keepalive is not None:
            self._keepalive.stop()
            self._keepalive = None
        self._transport.close()

    # ------------------------------------------------------------------ keep-alive
    def _start_keepalive(self) -> None:
        with self._lock:
            if self._keepalive is None:
                self._keepalive = _KeepAlive(self)
                self._keepalive.start()

    def _keepalive_stopped(self, thread: _KeepAlive) -> None:
        with self._lock:
            if self._keepalive is thread:
                self._keepalive = None

    def tickle_if_idle(self) -> bool:
        """Tickle the shared session when no process used it for ``tickle_interval`` seconds.

        Keep-alive never logs in: it tickles only a live session and raises the session error
        if the tickle fails, leaving recovery to the next real request.
        """
        idle = self._clock() - self._store.last_used(self._key)
        record = self._store.load(self._key)
        if idle < self.config.tickle_interval or record is None or not self._usable(record):
            return False
        self._tickle_result(self._send("POST", "/tickle", record))
        return True

    # ------------------------------------------------------------------ portfolio
    def _account(self, account_id: str | None) -> str:
        chosen = account_id or self.config.account_id
        if not chosen:
            raise IbkrValidationError(
                "account_id", "no account given and the connection has no default account_id; pass one"
            )
        if not _ACCOUNT_ID_RE.match(chosen):
            raise IbkrValidationError("account_id", f"{chosen!r} is not an IBKR account id such as U1234567")
        return chosen

    def _fresh_portfolio_accounts(self, record: SessionRecord | None) -> list[Any] | None:
        """The shared /portfolio/accounts answer, if it is younger than the TTL."""
        if record is None or record.portfolio_accounts is None:
            return None
        if self._clock() - record.portfolio_accounts_at >= PORTFOLIO_ACCOUNTS_TTL_SECONDS:
            return None
        return record.portfolio_accounts

    def _portfolio_preflight(self, *, force: bool = False) -> list[Any]:
        """``GET /portfolio/accounts`` once per session, shared by every process (single flight)."""
        cached = None if force else self._fresh_portfolio_accounts(self.session())
        if cached is not None:
            return cached
        with self._lock, self._store.lock(self._key):
            cached = None if force else self._fresh_portfolio_accounts(self._store.load(self._key))
            if cached is not None:
                return cached
            payload = self._call("GET", "/portfolio/accounts")
            if not isinstance(payload, list):
                raise IbkrResponseError(
                    "/portfolio/accounts did not answer with a list", endpoint="/v1/api/portfolio/accounts"
                )
            # Under the lock the stored record is authoritative (a recovery inside the call saved it).
            target = self._store.load(self._key) or self.session()
            target.portfolio_accounts = payload
            target.portfolio_accounts_at = self._clock()
            self._store.save(self._key, target)
            self._remember(target)
            return payload

    def list_accounts(self, *, refresh: bool = False) -> list[Account]:
        """``GET /portfolio/accounts``: every account the username can see.

        The answer is shared by all processes for five minutes (IBKR allows one call per 5 s);
        ``refresh=True`` reads it again.
        """
        try:
            payload = self._portfolio_preflight(force=refresh)
        except IbkrCompetingSessionError:
            raise
        except IbkrSessionError as exc:
            self._recover(self.session(), exc)
            payload = self._portfolio_preflight(force=True)
        return [Account.from_json(item) for item in payload]

    def account_summary(self, account_id: str | None = None) -> AccountSummary:
        """``GET /portfolio/{accountId}/summary``: net liquidation, cash, margin, cushion..."""
        account = self._account(account_id)
        self._portfolio_preflight()
        return AccountSummary.from_json(account, self._call("GET", f"/portfolio/{account}/summary"))

    def account_ledger(self, account_id: str | None = None) -> Ledger:
        """``GET /portfolio/{accountId}/ledger``: balances per currency and in BASE."""
        account = self._account(account_id)
        self._portfolio_preflight()
        return Ledger.from_json(account, self._call("GET", f"/portfolio/{account}/ledger"))

    def positions_page(self, account_id: str | None, page: int) -> list[Position]:
        """One page (0-based, up to 100 rows) of ``GET /portfolio/{accountId}/positions/{page}``."""
        account = self._account(account_id)
        if page < 0:
            raise IbkrValidationError("page", "position pages start at 0")
        self._portfolio_preflight()
        payload = self._call("GET", f"/portfolio/{account}/positions/{page}")
        if not isinstance(payload, list):
            raise IbkrResponseError(
                f"positions page {page} of {account} is not a list",
                endpoint=f"/v1/api/portfolio/{account}/positions/{page}",
            )
        return [Position.from_json(row) for row in payload]

    def all_positions(self, account_id: str | None = None) -> list[Position]:
        """Every position of the account, page by page until IBKR returns a short page.

        A page that fails raises: the caller never gets a silently shorter list.
        """
        account = self._account(account_id)
        positions: list[Position] = []
        for page in range(MAX_POSITION_PAGES):
            rows = self.positions_page(account, page)
            positions.extend(rows)
            if len(rows) < POSITIONS_PAGE_SIZE:
                return positions
        raise IbkrResponseError(
            f"{account} has more than {MAX_POSITION_PAGES} position pages; refusing to page further",
            endpoint=f"/v1/api/portfolio/{account}/positions",
        )


class _KeepAlive(threading.Thread):
    """Tickles the shared session when every process has left it idle for ``tickle_interval``.

    A daemon thread: it never keeps a finished task's process alive, and errors are logged,
    not raised (the next real request recovers the session if it died).
    """

    def __init__(self, client: IbkrClient) -> None:
        super().__init__(name="ibkr-keepalive", daemon=True)
        self._client = client
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        period = max(1.0, self._client.config.tickle_interval / 4)
        while not self._stopped.wait(period):
            try:
                self._client.tickle_if_idle()
            except IbkrSessionError as exc:
                # The session is gone; the next real request recovers it and restarts keep-alive.
                log.info("IBKR keep-alive stopped: %s", exc)
                self._client._keepalive_stopped(self)
                return
            except IbkrError as exc:
                log.warning("IBKR keep-alive tickle failed: %s", exc)
