"""Brokerage-session (``/iserver``) endpoints: status, keep-alive, accounts, trades, PnL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ibkr_provider.client.api.base import IbkrApi, read_answer, resolve_account
from ibkr_provider.client.errors import IbkrResponseError, IbkrValidationError
from ibkr_provider.client.models.executions import Execution
from ibkr_provider.client.models.portfolio import PnlRow
from ibkr_provider.client.models.session import BrokerageAccounts, BrokerageSessionStatus, TickleResult


class IserverApi:
    """``client.iserver``. ``secret_sink`` receives the tickle's session id (a secret)."""

    def __init__(self, api: IbkrApi, *, secret_sink: Callable[[str], None]) -> None:
        self._api = api
        self._sink = secret_sink

    def status(self) -> BrokerageSessionStatus:
        """``POST /iserver/auth/status`` on the shared session (opened first if needed)."""
        return BrokerageSessionStatus.from_json(self._api.call("POST", "/iserver/auth/status"))

    def tickle(self) -> TickleResult:
        """``POST /tickle``: keep the session alive (IBKR expects about one call per minute)."""
        return self.tickle_result(self._api.call("POST", "/tickle"))

    def tickle_result(self, payload: Any) -> TickleResult:
        """Parse a tickle answer; its session id goes to the masker."""
        result = TickleResult.from_json(payload)
        if result.session:
            self._sink(result.session)
        return result

    def brokerage_accounts(self) -> BrokerageAccounts:
        """The ``/iserver/accounts`` answer of the shared session (its pre-flight, done once)."""
        return self._api.iserver_preflight()

    def trades(self, days: int = 1, account_id: str | None = None) -> list[dict[str, Any]]:
        """``GET /iserver/account/trades``: executions of the last ``days`` days (IBKR allows at
        most 7 and paces the endpoint at 1 per 5 s). Raw rows, as IBKR sends them."""
        if not 1 <= days <= 7:
            raise IbkrValidationError("days", "IBKR returns trades for 1 to 7 days")
        params: dict[str, Any] = {"days": days}
        if account_id:
            params["accountId"] = resolve_account(account_id, None)
        self._api.iserver_preflight()
        rows = self._api.call("GET", "/iserver/account/trades", params=params)
        if not isinstance(rows, list):
            raise IbkrResponseError(
                "/iserver/account/trades did not answer with a list",
                endpoint="/v1/api/iserver/account/trades",
            )
        return rows

    def executions(self, days: int = 1, account_id: str | None = None) -> list[Execution]:
        """:meth:`trades` typed: one :class:`Execution` per fill (a malformed row is an error,
        never skipped)."""
        rows = self.trades(days, account_id)
        return read_answer("/iserver/account/trades", lambda: [Execution.from_json(row) for row in rows])

    def pnl(self) -> dict[str, PnlRow]:
        """``GET /iserver/account/pnl/partitioned``: daily PnL per account (IBKR: 1 per 5 s)."""
        self._api.iserver_preflight()
        payload = self._api.call("GET", "/iserver/account/pnl/partitioned")
        return read_answer("/iserver/account/pnl/partitioned", lambda: PnlRow.from_json(payload))
