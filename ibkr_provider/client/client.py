"""The IBKR Web API client: session set-up, the generic ``request`` and typed account reads.

Session set-up follows IBKR's order (shared reference sections 2-3): the auth strategy's
token steps, then ``GET /sso/validate`` (outer, read-only session), ``POST
/iserver/auth/ssodh/init`` (the brokerage session that all ``/iserver`` calls need) and the
``GET /iserver/accounts`` pre-flight IBKR requires before trading or market data. Portfolio
reads are preceded once per session by ``GET /portfolio/accounts``, which IBKR requires
"prior to calling other /portfolio endpoints".
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ibkr_provider.client.auth import AuthStrategy, SecretSink, SessionTokens, build_auth
from ibkr_provider.client.config import AuthType, IbkrClientConfig
from ibkr_provider.client.errors import (
    IbkrCompetingSessionError,
    IbkrConfigError,
    IbkrResponseError,
    IbkrSessionError,
)
from ibkr_provider.client.models import (
    Account,
    AccountSummary,
    BrokerageAccounts,
    BrokerageSessionStatus,
    Ledger,
    Position,
    SsoValidation,
    TickleResult,
)
from ibkr_provider.client.transport import HttpTransport

log = logging.getLogger(__name__)

#: "One page contains a maximum of 100 positions" (IBKR, /portfolio/{accountId}/positions/{pageId}).
POSITIONS_PAGE_SIZE = 100
#: A bound on paging so a misbehaving server cannot loop a task forever (100,000 positions).
MAX_POSITION_PAGES = 1000

_ACCOUNT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})


def _ignore_secret(_: str) -> None:
    """Default secret sink for plain-Python use, where no log masker exists."""


class IbkrClient:
    """A client for one IBKR username at one API host.

    Thread-safe: one lock guards session set-up so concurrent callers in a process share it.

    :param config: validated settings, see :meth:`IbkrClientConfig.from_mapping`.
    :param secret_sink: called with every token and signed assertion the client creates, so a
        host (the Airflow hook) can register them with its log masker before they could leak.
    """

    def __init__(
        self,
        config: IbkrClientConfig,
        *,
        secret_sink: SecretSink | None = None,
        transport: HttpTransport | None = None,
    ) -> None:
        self.config = config
        self._sink: Callable[[str], None] = secret_sink or _ignore_secret
        self._transport = transport or HttpTransport(verify=config.verify, timeout=config.timeout)
        self._auth: AuthStrategy = build_auth(config, secret_sink=self._sink)
        self._tokens: SessionTokens | None = None
        self._portfolio_ready = False
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ session
    @property
    def connected(self) -> bool:
        """True once a brokerage session was set up in this client (it may since have lapsed)."""
        return self._tokens is not None

    def connect(self) -> BrokerageSessionStatus:
        """Open a fresh session end to end and return the brokerage session status.

        Raises :class:`IbkrAuthError` when credentials are refused, :class:`IbkrSessionError`
        when IBKR does not grant a brokerage session, and
        :class:`IbkrCompetingSessionError` when another login holds it.
        """
        with self._lock:
            self._tokens = None
            self._portfolio_ready = False
            tokens = self._auth.open(self._transport)
            self._tokens = tokens
            try:
                validation = self.sso_validate()
                if not validation.result:
                    raise IbkrSessionError(
                        "IBKR reports the SSO session as invalid (/sso/validate RESULT=false)",
                        endpoint="/v1/api/sso/validate",
                        code="sso_invalid",
                    )
                status = self._establish_brokerage_session()
                accounts = self.brokerage_accounts()
            except BaseException:
                self._tokens = None
                raise
            log.info(
                "IBKR brokerage session ready (%s mode, %d account(s))",
                self.config.auth_type.value,
                len(accounts.accounts),
            )
            return status

    def _establish_brokerage_session(self) -> BrokerageSessionStatus:
        if self.config.auth_type is AuthType.GATEWAY:
            # A logged-in gateway usually already has a brokerage session; re-initialising it
            # would needlessly compete with itself.
            status = self.auth_status()
            if status.healthy:
                return status
        status = self.init_brokerage_session()
        if status.competing:
            raise IbkrCompetingSessionError(
                "another login for this IBKR username (TWS, IBKR Mobile or Client Portal) holds the "
                "brokerage session; log out there or use a second username for the API",
                endpoint="/v1/api/iserver/auth/ssodh/init",
                ibkr_error=status.message or status.fail or None,
                code="competing",
            )
        if not status.authenticated:
            reason = status.fail or status.message or "authenticated=false"
            raise IbkrSessionError(
                f"IBKR did not grant a brokerage session: {reason}",
                endpoint="/v1/api/iserver/auth/ssodh/init",
                ibkr_error=status.fail or status.message or None,
                code="not_authenticated",
            )
        return status

    def ensure_session(self) -> None:
        """Connect unless this client already holds a session."""
        with self._lock:
            if self._tokens is None:
                self.connect()

    def close(self) -> None:
        """Release the HTTP connection pool (the IBKR session itself is left open)."""
        self._transport.close()

    # ------------------------------------------------------------------ raw access
    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Call any ``/v1/api`` endpoint with the client's auth, session recovery and errors.

        :param path: path below ``/v1/api``, e.g. ``/iserver/account/trades``.
        :return: the decoded JSON body.
        """
        verb = method.upper()
        if verb not in _METHODS:
            raise IbkrConfigError(
                "method", f"{method!r} is not an HTTP method; use one of {sorted(_METHODS)}"
            )
        if "://" in path or not path.strip():
            raise IbkrConfigError(
                "path", f"{path!r} must be a path below /v1/api such as '/portfolio/accounts'"
            )
        self.ensure_session()
        return self._api(verb, path, params=params, json_body=json)

    def _api(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        recover: bool = True,
    ) -> Any:
        url = f"{self.config.api_url}/{path.lstrip('/')}"
        tokens = self._tokens or SessionTokens()
        try:
            return self._transport.send(
                method, url, headers=self._auth.headers(tokens), params=params, json_body=json_body
            )
        except IbkrCompetingSessionError:
            raise
        except IbkrSessionError as exc:
            if not recover or self._tokens is None:
                raise
            # Recover once: a fresh session, then the same request once more. Never loop.
            log.warning("IBKR session lost (%s); re-establishing it once and retrying", exc.code)
            with self._lock:
                if self._tokens is tokens:
                    self.connect()
                if path.startswith("/portfolio/") and path != "/portfolio/accounts":
                    self._api("GET", "/portfolio/accounts", recover=False)
                    self._portfolio_ready = True
            return self._api(method, path, params=params, json_body=json_body, recover=False)

    # ------------------------------------------------------------------ session endpoints
    def sso_validate(self) -> SsoValidation:
        """``GET /sso/validate``: the read-only session's validity (IBKR paces it at 1/min)."""
        return SsoValidation.from_json(self._api("GET", "/sso/validate", recover=False))

    def auth_status(self) -> BrokerageSessionStatus:
        """``POST /iserver/auth/status``: the brokerage session state."""
        return BrokerageSessionStatus.from_json(self._api("POST", "/iserver/auth/status", recover=False))

    def init_brokerage_session(self, *, compete: bool = True) -> BrokerageSessionStatus:
        """``POST /iserver/auth/ssodh/init`` with ``publish: true`` (IBKR's preferred form)."""
        body = self._api(
            "POST", "/iserver/auth/ssodh/init", json_body={"publish": True, "compete": compete}, recover=False
        )
        return BrokerageSessionStatus.from_json(body)

    def brokerage_accounts(self) -> BrokerageAccounts:
        """``GET /iserver/accounts``: the pre-flight IBKR requires before ``/iserver`` trading calls."""
        return BrokerageAccounts.from_json(self._api("GET", "/iserver/accounts", recover=False))

    def tickle(self) -> TickleResult:
        """``POST /tickle``: keep the session alive (IBKR expects about one call per minute)."""
        self.ensure_session()
        result = TickleResult.from_json(self._api("POST", "/tickle"))
        if result.session:
            self._sink(result.session)
        return result

    def logout(self) -> None:
        """``POST /logout``: end the IBKR session and forget it locally."""
        with self._lock:
            if self._tokens is not None:
                self._api("POST", "/logout", recover=False)
            self._tokens = None
            self._portfolio_ready = False

    # ------------------------------------------------------------------ portfolio
    def _account(self, account_id: str | None) -> str:
        chosen = account_id or self.config.account_id
        if not chosen:
            raise IbkrConfigError(
                "account_id", "no account given and the connection has no default account_id; pass one"
            )
        if not _ACCOUNT_ID_RE.match(chosen):
            raise IbkrConfigError("account_id", f"{chosen!r} is not an IBKR account id such as U1234567")
        return chosen

    def list_accounts(self) -> list[Account]:
        """``GET /portfolio/accounts``: every account the username can see."""
        payload = self.request("GET", "/portfolio/accounts")
        if not isinstance(payload, list):
            raise IbkrResponseError(
                "/portfolio/accounts did not answer with a list", endpoint="/v1/api/portfolio/accounts"
            )
        self._portfolio_ready = True
        return [Account.from_json(item) for item in payload]

    def _portfolio_preflight(self) -> None:
        self.ensure_session()
        if not self._portfolio_ready:
            self.list_accounts()

    def account_summary(self, account_id: str | None = None) -> AccountSummary:
        """``GET /portfolio/{accountId}/summary``: net liquidation, cash, margin, cushion..."""
        account = self._account(account_id)
        self._portfolio_preflight()
        return AccountSummary.from_json(account, self.request("GET", f"/portfolio/{account}/summary"))

    def account_ledger(self, account_id: str | None = None) -> Ledger:
        """``GET /portfolio/{accountId}/ledger``: balances per currency and in BASE."""
        account = self._account(account_id)
        self._portfolio_preflight()
        return Ledger.from_json(account, self.request("GET", f"/portfolio/{account}/ledger"))

    def positions_page(self, account_id: str | None, page: int) -> list[Position]:
        """One page (0-based, up to 100 rows) of ``GET /portfolio/{accountId}/positions/{page}``."""
        account = self._account(account_id)
        if page < 0:
            raise IbkrConfigError("page", "position pages start at 0")
        self._portfolio_preflight()
        payload = self.request("GET", f"/portfolio/{account}/positions/{page}")
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
