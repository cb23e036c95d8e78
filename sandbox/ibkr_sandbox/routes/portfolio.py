"""The portfolio endpoints: accounts, summary, ledger, positions pages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ibkr_sandbox import portfolio
from ibkr_sandbox.routes.common import Gate, ibkr_error

#: IBKR lists at most 100 accounts at once and pages ``/portfolio/subaccounts2`` beyond.
SUBACCOUNTS_PAGE = 100


def portfolio_router(gate: Gate) -> APIRouter:
    router = APIRouter()
    state = gate.state  # the book is read under its lock: fills move positions and cash

    @router.get("/v1/api/portfolio/accounts")
    @router.get("/v1/api/portfolio/subaccounts")
    def portfolio_accounts(request: Request) -> list[dict[str, Any]]:
        """At most 100 accounts (an advisor with more reads ``subaccounts2``: UNCONFIRMED that
        ``/portfolio/accounts`` stops at 100 too, the sandbox's model)."""
        record = gate.session(request)
        with state.lock:
            record.portfolio_accounts_queried = True
            book = state.book.accounts
            listed = state.credentials[record.credential][:SUBACCOUNTS_PAGE]
            return [portfolio.account_json(book[a]) for a in listed]

    @router.get("/v1/api/portfolio/subaccounts2")
    def portfolio_subaccounts2(request: Request, page: int = 0) -> dict[str, Any]:
        """An advisor's sub-accounts, 100 a page, with the total (shape UNCONFIRMED)."""
        record = gate.session(request)
        if page < 0:
            raise ibkr_error(400, "Bad Request: page must be >= 0")
        with state.lock:
            record.portfolio_accounts_queried = True
            every = state.credentials[record.credential]
            rows = every[page * SUBACCOUNTS_PAGE : (page + 1) * SUBACCOUNTS_PAGE]
            return {
                "metadata": {"total": len(every), "pageSize": SUBACCOUNTS_PAGE, "pageNum": page},
                "subaccounts": [portfolio.account_json(state.book.accounts[a]) for a in rows],
            }

    @router.get("/v1/api/portfolio/{account_id}/summary")
    def summary(request: Request, account_id: str) -> dict[str, Any]:
        account = gate.account_for(gate.session(request), account_id)
        with state.lock:
            return portfolio.summary_json(state.book, account)

    @router.get("/v1/api/portfolio/{account_id}/ledger")
    def ledger(request: Request, account_id: str) -> dict[str, Any]:
        account = gate.account_for(gate.session(request), account_id)
        with state.lock:
            return portfolio.ledger_json(state.book, account)

    @router.get("/v1/api/portfolio/{account_id}/positions/{page}")
    def positions(request: Request, account_id: str, page: int) -> list[dict[str, Any]]:
        account = gate.account_for(gate.session(request), account_id)
        if page < 0:
            raise ibkr_error(400, "Bad Request: pageId must be >= 0")
        with state.lock:
            return portfolio.positions_page(state.book, account, page)

    return router
