"""The request pipeline: every ``/v1/api`` request of the endpoint groups goes retry(pace ->
sign -> send) on the shared session, recovered once.

The session manager gives the session (opening or renewing it first, single flight) and repairs
it once when IBKR drops it (a 401, "no bridge", "Please query /accounts first"); the sender paces,
signs and sends with the transport's bounded retries. The endpoint groups state their own rules:
whether a request may be repeated after an ambiguous failure (order placement may not) and what
must run again after a recovery (the portfolio pre-flight). The pre-flights IBKR requires are
read here once and shared through the session record.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from ibkr_provider.client.errors import (
    IbkrCompetingSessionError,
    IbkrResponseError,
    IbkrSessionError,
    IbkrValidationError,
)
from ibkr_provider.client.models.session import BrokerageAccounts
from ibkr_provider.client.session.manager import SessionManager
from ibkr_provider.client.session.record import SessionRecord
from ibkr_provider.client.session.stores.base import Lease

#: How long the shared /portfolio/accounts answer is reused (IBKR paces it at 1 per 5 s).
PORTFOLIO_ACCOUNTS_TTL_SECONDS = 300.0
#: Requests that place, modify or confirm orders: never retried blindly.
_ORDER_WRITES = re.compile(r"^/iserver/(account/[^/]+/orders?(/.*)?|reply/.+)$")
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})


def is_idempotent(method: str, path: str) -> bool:
    """Whether repeating the request after an ambiguous failure is harmless: every read, and
    every write except placing, modifying or confirming an order (for callers that do not say,
    such as the client's raw :meth:`~ibkr_provider.client.client.IbkrClient.request`)."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return True
    return _ORDER_WRITES.match("/" + path.lstrip("/")) is None


class RequestPipeline:
    """What the endpoint groups call (:class:`~ibkr_provider.client.api.base.IbkrApi`)."""

    def __init__(self, sessions: SessionManager, clock: Callable[[], float] = time.time) -> None:
        self.sessions = sessions
        self._clock = clock
        self._lock = threading.RLock()

    @property
    def default_account(self) -> str | None:
        """The connection's ``account_id``, for calls that name none."""
        return self.sessions.config.account_id

    def lock(self, name: str, timeout: float) -> AbstractContextManager[Lease]:
        return self.sessions.lock(name, timeout)

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        idempotent: bool = True,
        after_recovery: Callable[[], object] | None = None,
    ) -> Any:
        """A ``/v1/api`` request on the shared session, recovered once if the session fails."""
        record = self.sessions.session()
        send = self.sessions.sender.send_on
        try:
            return send(record, method, path, params=params, json_body=json_body, idempotent=idempotent)
        except IbkrCompetingSessionError:
            raise
        except IbkrSessionError as exc:
            record = self.sessions.recover(record, exc)
        if after_recovery is not None:
            after_recovery()
        return send(record, method, path, params=params, json_body=json_body, idempotent=idempotent)

    def any_endpoint(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        idempotent: bool | None,
    ) -> Any:
        """A call to an endpoint no group wraps (the client's ``request``): the method and path
        checked before anything is sent, idempotency inferred when not given, and the portfolio
        pre-flight repeated after a recovery for ``/portfolio/...`` paths, as the groups do."""
        verb = method.upper()
        if verb not in _METHODS:
            raise IbkrValidationError(
                "method", f"{method!r} is not an HTTP method; use one of {sorted(_METHODS)}"
            )
        if "://" in path or not path.strip():
            raise IbkrValidationError(
                "path", f"{path!r} must be a path below /v1/api such as '/portfolio/accounts'"
            )
        api_path = "/" + path.strip().lstrip("/")
        portfolio = api_path.startswith("/portfolio/") and api_path != "/portfolio/accounts"
        return self.call(
            verb,
            api_path,
            params=params,
            json_body=json_body,
            idempotent=is_idempotent(verb, api_path) if idempotent is None else idempotent,
            after_recovery=(lambda: self.portfolio_preflight(force=True)) if portfolio else None,
        )

    # ------------------------------------------------------------------ pre-flights
    def iserver_preflight(self) -> BrokerageAccounts:
        """The ``/iserver/accounts`` answer of the shared session (read once, at set-up)."""
        record = self.sessions.session()
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
        """``GET /portfolio/accounts`` ("must be called prior to calling other /portfolio
        endpoints") once per session and five minutes, shared by every process (single flight);
        ``force`` reads it again."""
        sessions = self.sessions
        cached = None if force else self._fresh_portfolio_accounts(sessions.session())
        if cached is not None:
            return cached
        with self._lock, sessions.store.lock(sessions.key):
            cached = None if force else self._fresh_portfolio_accounts(sessions.store.load(sessions.key))
            if cached is not None:
                return cached
            payload = self.call("GET", "/portfolio/accounts")
            if not isinstance(payload, list):
                raise IbkrResponseError(
                    "/portfolio/accounts did not answer with a list", endpoint="/v1/api/portfolio/accounts"
                )
            # Under the lock the stored record is authoritative (a recovery inside the call saved it).
            target = sessions.store.load(sessions.key) or sessions.session()
            target.portfolio_accounts = payload
            target.portfolio_accounts_at = self._clock()
            sessions.store.save(sessions.key, target)
            sessions.remember(target)
            return payload
