"""The IBKR portfolio page, inside Airflow's UI: ``GET /ibkr/portfolio``.

Per account: net liquidation over time (an SVG chart, a dot per snapshot), the latest snapshot's
positions as a table sortable by any column (links, no script), cash by currency and the last
rebalance plan with its decision and fills (when the trade journal exists). With ``dag_id`` and
``run_id`` (the tab on a DAG run's page) it shows the portfolio as of that run.

It reads what the DAGs wrote (:mod:`ibkr_provider.plugins.portfolio_data`), never IBKR, in a
worker thread. Access follows Airflow's auth manager: a login is required, and only snapshots
and plans of DAGs whose runs the user may read are shown (who may read the DAG's runs may read
these figures in its XCom already). The page may be framed by Airflow's own UI only.
"""

from __future__ import annotations

import asyncio
import html
import urllib.parse
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from ibkr_provider.plugins.pages import logged_in_user
from ibkr_provider.workflows.portfolio_view import COLUMNS, AccountView, money, quantity, svg_line_chart

#: Framed by Airflow's UI (same origin) and nothing else; never cached.
FRAMED_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "frame-ancestors 'self'",
    "X-Frame-Options": "SAMEORIGIN",
}
JOURNAL_CONN_ID = "ibkr_journal"
STYLE = """body{font-family:sans-serif;margin:1rem 2rem;color:#1a1a1a}table{border-collapse:collapse}
td,th{border-bottom:1px solid #ddd;padding:.3rem .7rem;text-align:right}
td:first-child,th:first-child{text-align:left}th a{color:inherit}.muted{color:#666}
section{margin-bottom:2.5rem}nav a{margin-right:1rem}"""


def add_portfolio_routes(app: FastAPI) -> None:
    @app.get("/portfolio", name="ibkr_portfolio")
    async def portfolio(
        request: Request, sort: str = "market_value", order: str = "desc", dag_id: str = "", run_id: str = ""
    ) -> HTMLResponse:
        from ibkr_provider.plugins.portfolio_data import last_rebalances, newest_items, snapshot_events
        from ibkr_provider.workflows.portfolio_view import account_views

        may_read = _reader(await logged_in_user(request))

        def gather() -> tuple[list[AccountView], dict[str, Any], str]:
            events = snapshot_events(may_read, dag_id=dag_id or None, run_id=run_id or None)
            views = account_views([(e.at, e.extra) for e in events], newest_items(events))
            when = f"{events[-1].at:%Y-%m-%d %H:%M} UTC" if events else ""
            return views, last_rebalances(may_read, JOURNAL_CONN_ID), when

        views, plans, when = await asyncio.to_thread(gather)
        query = {"dag_id": dag_id, "run_id": run_id} if dag_id and run_id else {}
        body = _body(views, plans, when, sort, order != "asc", query)
        title = f"IBKR portfolio as of run {run_id}" if run_id else "IBKR portfolio"
        return HTMLResponse(
            f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>",
            headers=FRAMED_HEADERS,
        )


def _reader(user: Any) -> Callable[[str], bool]:
    """Whether the auth manager lets ``user`` read runs of a DAG (asked once per DAG)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    manager, answers = get_auth_manager(), {}

    def may_read(dag_id: str) -> bool:
        if dag_id not in answers:
            answers[dag_id] = manager.is_authorized_dag(
                method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
            )
        return answers[dag_id]

    return may_read


def _body(
    views: list[AccountView],
    plans: dict[str, Any],
    when: str,
    sort: str,
    descending: bool,
    query: dict[str, str],
) -> str:
    if not views:
        return (
            "<p>No portfolio snapshot you may read yet. Run the <b>ibkr_portfolio_snapshot</b> DAG "
            "(it writes the files and the Asset events this page reads).</p>"
        )
    nav = "".join(f'<a href="#{html.escape(v.account_id)}">{html.escape(v.account_id)}</a>' for v in views)
    sections = "".join(_account(v, plans.get(v.account_id), sort, descending, query) for v in views)
    return f'<p class="muted">Latest snapshot: {html.escape(when)}</p><nav>{nav}</nav>{sections}'


def _account(view: AccountView, plan: Any, sort: str, descending: bool, query: dict[str, str]) -> str:
    cur = view.currency
    cash = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(money(amount))}</td></tr>"
        for name, amount in view.cash
    )
    return (
        f'<section id="{html.escape(view.account_id)}"><h2>{html.escape(view.account_id)}</h2>'
        f"<p>Net liquidation <b>{html.escape(money(view.net_liquidation, cur))}</b> &middot; positions "
        f"{len(view.positions):,} worth {html.escape(money(view.market_value, cur))}</p>"
        f"<h3>Net liquidation over time</h3>{svg_line_chart(view.history, cur)}"
        f"<h3>Cash by currency</h3><table><tr><th>Currency</th><th>Cash</th></tr>{cash}</table>"
        f"<h3>Positions{_as_of(view)}</h3>{_positions(view, sort, descending, query)}"
        f"<h3>Last rebalance</h3>{_plan(plan)}</section>"
    )


def _as_of(view: AccountView) -> str:
    at = view.positions_as_of
    return f' <span class="muted">(snapshot of {at:%Y-%m-%d %H:%M} UTC)</span>' if at else ""


def _positions(view: AccountView, sort: str, descending: bool, query: dict[str, str]) -> str:
    if not view.positions:
        return "<p>No positions.</p>"
    head = ""
    for key, label in COLUMNS.items():
        flip = "asc" if key == sort and descending else "desc"
        arrow = (" \u25bc" if descending else " \u25b2") if key == sort else ""
        link = "?" + urllib.parse.urlencode({**query, "sort": key, "order": flip}) + f"#{view.account_id}"
        head += f'<th><a href="{html.escape(link)}">{label}{arrow}</a></th>'
    rows = "".join(
        "<tr>"
        f"<td>{html.escape(p.symbol)}</td><td>{quantity(p.quantity)}</td>"
        f"<td>{html.escape(money(p.price))}</td><td>{html.escape(money(p.market_value))}</td>"
        f"<td>{'n/a' if p.weight is None else f'{p.weight:.2%}'}</td>"
        f"<td>{html.escape(money(p.unrealized_pnl))}</td><td>{html.escape(p.currency)}</td></tr>"
        for p in view.sorted_positions(sort, descending)
    )
    return f'<table class="positions"><tr>{head}</tr>{rows}</table>'


def _plan(plan: Any) -> str:
    if plan is None:
        return '<p class="muted">No rebalance plan in the trade journal.</p>'
    decided = (
        f"{html.escape(plan.decision)} by {html.escape(plan.decided_by or 'nobody')}"
        if plan.decision
        else "no decision recorded"
    )
    orders = ", ".join(html.escape(o) for o in plan.orders) or "no orders"
    fills = ", ".join(html.escape(f) for f in plan.fills) or "none"
    return (
        f"<p>{html.escape(plan.dag_id)} run {html.escape(plan.run_id)} at {plan.planned_at:%Y-%m-%d %H:%M} "
        f"UTC: {orders}.<br>Decision: {decided}. Fills: {fills}.</p>"
    )
