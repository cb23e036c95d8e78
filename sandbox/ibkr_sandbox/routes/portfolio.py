"""The portfolio endpoints: accounts, summary, ledger, positions pages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ibkr_sandbox import portfolio
from ibkr_sandbox.routes.common import Gate, ibkr_error


def portfolio_router(gate: Gate) -> APIRouter:
    router = APIRouter()
    state = gate.state  # the book is read under its lock: fills move positions and cash

    @router.get("/v1/api/portfolio/accounts")
    def portfolio_accounts(request: Request) -> list[dict[str, Any]]:
        record = gate.session(request)
        with state.lock:
            record.portfolio_accounts_queried = True
            book = state.book.accounts
            return [portfolio.account_json(book[a]) for a in state.credentials[record.credential]]

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
