"""Portfolio endpoints: accounts, summary, ledger and every page of positions.

IBKR: ``/portfolio/accounts`` "must be called prior to calling other /portfolio endpoints"
(Web API documentation, Portfolio); the session manager reads it once and shares it.
"One page contains a maximum of 100 positions" (``/portfolio/{accountId}/positions/{pageId}``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from ibkr_provider.client.api.base import IbkrApi, read_answer, resolve_account
from ibkr_provider.client.errors import IbkrResponseError, IbkrValidationError
from ibkr_provider.client.fields import path_segment
from ibkr_provider.client.models._json import optional_int, require_mapping
from ibkr_provider.client.models.paper import account_is_paper
from ibkr_provider.client.models.portfolio import Account, AccountSummary, Ledger, Position

POSITIONS_PAGE_SIZE = 100
#: A bound on paging so a misbehaving server cannot loop a task forever (100,000 positions).
MAX_POSITION_PAGES = 1000
#: IBKR lists at most this many accounts in ``/portfolio/accounts`` and ``/portfolio/subaccounts``
#: and pages ``/portfolio/subaccounts2`` for advisors with more (page size UNCONFIRMED: read
#: from each answer's ``metadata``).
SUBACCOUNTS_PAGE_SIZE = 100
#: No advisor has more pages than this: stop instead of looping on a server that never ends.
MAX_SUBACCOUNT_PAGES = 10_000


class PortfolioApi:
    """``client.portfolio``."""

    def __init__(self, api: IbkrApi) -> None:
        self._api = api

    def _call(self, path: str) -> Any:
        """A portfolio GET; after a session recovery IBKR wants its pre-flight again first."""
        return self._api.call("GET", path, after_recovery=lambda: self._api.portfolio_preflight(force=True))

    def account(self, account_id: str | None) -> str:
        """``account_id``, else the connection's default account, validated."""
        return resolve_account(account_id, self._api.default_account)

    def list_accounts(self, *, refresh: bool = False) -> list[Account]:
        """``GET /portfolio/accounts``: every account the username can see.

        Shared by all processes for five minutes (IBKR allows one call per 5 s); ``refresh``
        reads it again.
        """
        accounts = self._api.portfolio_preflight(force=refresh)
        return read_answer("/portfolio/accounts", lambda: [Account.from_json(item) for item in accounts])

    def is_paper(self, account_id: str) -> bool:
        """Whether IBKR says ``account_id`` is a paper account: its ``/portfolio/accounts`` type
        and the login's ``isPaper`` (see :mod:`ibkr_provider.client.models.paper`). An account IBKR says
        nothing about is live."""
        account = resolve_account(account_id, None)
        login_is_paper = self._api.iserver_preflight().is_paper
        return account_is_paper(
            account, login_is_paper=login_is_paper, accounts=self._api.portfolio_preflight()
        )

    def _read_account(self, account_id: str | None, what: str) -> tuple[str, str, Any]:
        """``GET /portfolio/{accountId}/{what}`` after IBKR's pre-flight: the account, the path
        and IBKR's answer."""
        account = self.account(account_id)
        self._api.portfolio_preflight()
        path = f"/portfolio/{path_segment(account)}/{what}"
        return account, path, self._call(path)

    def account_summary(self, account_id: str | None = None) -> AccountSummary:
        """``GET /portfolio/{accountId}/summary``: net liquidation, cash, margin, cushion..."""
        account, path, payload = self._read_account(account_id, "summary")
        return read_answer(path, lambda: AccountSummary.from_json(account, payload))

    def account_ledger(self, account_id: str | None = None) -> Ledger:
        """``GET /portfolio/{accountId}/ledger``: balances per currency and in BASE."""
        account, path, payload = self._read_account(account_id, "ledger")
        return read_answer(path, lambda: Ledger.from_json(account, payload))

    def positions_page(self, account_id: str | None, page: int) -> list[Position]:
        """One page (0-based, up to 100 rows) of ``GET /portfolio/{accountId}/positions/{page}``."""
        if page < 0:
            raise IbkrValidationError("page", "position pages start at 0")
        account, path, payload = self._read_account(account_id, f"positions/{int(page)}")
        if not isinstance(payload, list):
            raise IbkrResponseError(
                f"positions page {page} of {account} is not a list", endpoint="/v1/api" + path
            )
        return read_answer(path, lambda: [Position.from_json(row) for row in payload])

    def all_subaccounts(self) -> list[Account]:
        """Every sub-account of an advisor login, page by page from
        ``GET /portfolio/subaccounts2?page=N`` (IBKR's endpoint for more than 100; the answer's
        shape, ``metadata.total`` and ``subaccounts``, is UNCONFIRMED). Pages are read until the
        total is reached; a failed page or a page that ends short of the total raises: the caller
        never gets a silently shorter list."""
        self._api.portfolio_preflight()
        path = "/portfolio/subaccounts2"
        accounts: list[Account] = []
        for page in range(MAX_SUBACCOUNT_PAGES):
            rows, total = read_answer(
                path, functools.partial(_subaccount_page, self._api.call("GET", path, params={"page": page}))
            )
            accounts.extend(rows)
            if len(accounts) >= total or not rows:
                if len(accounts) != total:
                    where = "/v1/api" + path
                    raise IbkrResponseError(
                        f"page {page} ended the sub-accounts at {len(accounts)} of {total}", endpoint=where
                    )
                return accounts
        raise IbkrResponseError(
            f"more than {MAX_SUBACCOUNT_PAGES} sub-account pages", endpoint="/v1/api" + path
        )

    def all_positions(self, account_id: str | None = None) -> list[Position]:
        """Every position, page by page until IBKR returns a short page (whether an empty or a
        short page ends paging is undocumented; a short page covers both). A page that fails
        raises: the caller never gets a silently shorter list."""
        account = self.account(account_id)
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


def _subaccount_page(payload: Any) -> tuple[list[Account], int]:
    """One ``/portfolio/subaccounts2`` answer: its accounts and the total it announces."""
    data = require_mapping(payload, "a sub-accounts page")
    rows, meta = data.get("subaccounts"), data.get("metadata")
    if not isinstance(rows, list) or not isinstance(meta, Mapping):
        raise IbkrResponseError("a sub-accounts page lacks 'subaccounts' or 'metadata'")
    total = optional_int(meta, "total", "sub-accounts metadata")
    if total is None or total < 0:
        raise IbkrResponseError("the sub-accounts metadata has no total")
    return [Account.from_json(row) for row in rows], total
