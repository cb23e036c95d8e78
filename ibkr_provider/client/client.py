"""``IbkrClient``: one IBKR username at one API host, wired from its parts.

The parts, one job each: :class:`~ibkr_provider.client.session.manager.SessionManager` (the shared
session: single flight, opening, recovery, locks), the sender under it (pacing, signing, then
:class:`~ibkr_provider.client.http.transport.HttpTransport` with bounded retries), the request
pipeline over it (:class:`~ibkr_provider.client.api.pipeline.RequestPipeline`: recovery once,
IBKR's pre-flights), the keep-alive thread (:mod:`ibkr_provider.client.session.keepalive`), and
the endpoint groups, created once and exposed as attributes: ``client.portfolio``,
``client.iserver``, ``client.orders`` and ``client.market_data``. The groups' most used calls
are also methods of the client itself, on purpose: they are what DAG code writes.

Close the client (or use it as a context manager) when done: that stops its keep-alive
registration and releases its HTTP connections. The IBKR session itself stays open for the
other processes sharing it; :meth:`IbkrClient.logout` ends it for everyone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ibkr_provider.client.api.iserver import IserverApi
from ibkr_provider.client.api.marketdata import MarketData
from ibkr_provider.client.api.orders import OrderService
from ibkr_provider.client.api.pipeline import RequestPipeline
from ibkr_provider.client.api.portfolio import PortfolioApi
from ibkr_provider.client.auth.base import SecretSink
from ibkr_provider.client.auth.factory import build_auth
from ibkr_provider.client.config import IbkrClientConfig
from ibkr_provider.client.http.pacing import Pacer
from ibkr_provider.client.http.transport import HttpTransport
from ibkr_provider.client.models.portfolio import Account, AccountSummary, Ledger, PnlRow, Position
from ibkr_provider.client.models.session import BrokerageAccounts, BrokerageSessionStatus, TickleResult
from ibkr_provider.client.session import keepalive
from ibkr_provider.client.session.manager import SessionManager
from ibkr_provider.client.session.record import Cipher, SessionRecord, session_key
from ibkr_provider.client.session.sender import SessionSender
from ibkr_provider.client.session.stores.base import SessionStore
from ibkr_provider.client.session.stores.factory import build_session_store
from ibkr_provider.client.session.token_keeper import StoreTokenKeeper


def _ignore_secret(_: str) -> None:
    """Default secret sink for plain-Python use, where no log masker exists."""


class IbkrClient:
    """A client for one IBKR username at one API host.

    :param config: validated settings, see :meth:`IbkrClientConfig.from_mapping`.
    :param secret_sink: called with every token and signed assertion the client creates, so a
        host (the Airflow hook) can register them with its log masker before they could leak.
    :param store: where the shared session lives; built from ``config.session_cache`` if omitted.
    :param cipher: encrypts records the store writes to disk or Redis.
    :param owner: who this client is, for the shared record (the Airflow connection id): errors
        name it when its session holds, or took, the brokerage session another one needed.
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
        owner: str | None = None,
    ) -> None:
        self.config = config
        self._closed = False
        sink: SecretSink = secret_sink or _ignore_secret
        transport = transport or HttpTransport(
            verify=config.verify, timeout=config.timeout, retry_policy=config.retry
        )
        #: A store this client built is closed with it (its pacing descriptors, its Redis pool).
        self._owns_store = store is None
        store = store or build_session_store(
            config.session_cache, default_dir=config.session_cache_dir, cipher=cipher
        )
        key = session_key(config.base_url, *config.identity)
        sender = SessionSender(
            api_url=config.api_url,
            auth=build_auth(config, secret_sink=sink, keeper=StoreTokenKeeper(store, key)),
            transport=transport,
            pacer=Pacer(store, key, global_limit=config.effective_rate_limit, clock=clock),
            store=store,
            key=key,
            clock=clock,
        )
        self.sessions = SessionManager(
            config,
            sender=sender,
            store=store,
            key=key,
            secret_sink=sink,
            on_ready=self._keep_alive,
            clock=clock,
            owner=owner,
        )
        self.pipeline = RequestPipeline(self.sessions, clock)
        self.iserver = IserverApi(self.pipeline, secret_sink=sink)
        self.portfolio = PortfolioApi(self.pipeline)
        self.orders = OrderService(self.pipeline)
        self.market_data = MarketData(self.pipeline)

    @property
    def session_key(self) -> str:
        """The cache key of this client's session (base URL, client id, credential)."""
        return self.sessions.key

    def session(self) -> SessionRecord:
        """The shared session, opened or renewed first when missing or near expiry."""
        return self.sessions.session()

    def connect(self) -> BrokerageSessionStatus:
        """Make sure a usable shared session exists and return its brokerage status."""
        return self.iserver.status()

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        *,
        idempotent: bool | None = None,
    ) -> Any:
        """Call any ``/v1/api`` endpoint with the client's auth, pacing, retries, recovery and errors.

        :param path: path below ``/v1/api``, e.g. ``/iserver/account/trades``.
        :param idempotent: whether an ambiguous failure may be retried; inferred when None
            (order placement, modification and replies are not).
        :return: the decoded JSON body.
        """
        return self.pipeline.any_endpoint(method, path, params, json, idempotent)

    # The endpoint groups' most used calls, on the client itself as before.
    def list_accounts(self, *, refresh: bool = False) -> list[Account]:
        return self.portfolio.list_accounts(refresh=refresh)

    def account_summary(self, account_id: str | None = None) -> AccountSummary:
        return self.portfolio.account_summary(account_id)

    def account_ledger(self, account_id: str | None = None) -> Ledger:
        return self.portfolio.account_ledger(account_id)

    def all_positions(self, account_id: str | None = None) -> list[Position]:
        return self.portfolio.all_positions(account_id)

    def brokerage_accounts(self) -> BrokerageAccounts:
        return self.iserver.brokerage_accounts()

    def pnl(self) -> dict[str, PnlRow]:
        return self.iserver.pnl()

    def tickle(self) -> TickleResult:
        return self.iserver.tickle()

    # ------------------------------------------------------------------ keep-alive and lifetime
    def _keep_alive(self) -> None:
        keepalive.register(self.session_key, self, self.tickle_if_idle, interval=self.config.tickle_interval)
        if self._closed:  # closed while another thread opened its session: nothing may outlive it
            keepalive.release(self.session_key, self)

    def tickle_if_idle(self) -> bool:
        """Tickle the shared session if no process used it for ``tickle_interval`` seconds. Never
        logs in: a dead session raises the session error; the next real request recovers it."""
        record = self.sessions.idle_record()
        if record is None:
            return False
        self.iserver.tickle_result(self.sessions.sender.send_on(record, "POST", "/tickle"))
        return True

    @property
    def keepalive_running(self) -> bool:
        """Whether this process keeps the session alive on this client's behalf."""
        return keepalive.is_running(self.session_key, self)

    def logout(self) -> None:
        """``POST /logout``: end the shared IBKR session for every process using it, and forget
        the shared record (its tokens must not outlive the session)."""
        self.sessions.logout()

    def close(self) -> None:
        """Stop keeping the session alive for this client, even from a thread still opening it, and
        release the HTTP connections (the IBKR session stays open for others). Safe twice."""
        self._closed = True
        keepalive.release(self.session_key, self)
        self.sessions.sender.close()  # a request waiting for its pacing slot raises; none is sent
        if self._owns_store:
            self.sessions.store.close()

    def __enter__(self) -> IbkrClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
