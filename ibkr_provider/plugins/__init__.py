"""The provider's Airflow plugin (entry point ``airflow.plugins``), loaded by the API server.

Importing it stays cheap: Airflow loads plugins in every process that integrates them (the API
server, the scheduler, ``airflow dags test``, task processes), and only the API server serves the
Connect IBKR pages, so their FastAPI app is built when first used there (see ``ConnectApp``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.plugins_manager import AirflowPlugin

from ibkr_provider.plugins.asgi import Receive, Scope, Send
from ibkr_provider.plugins.connection_test import ConnectionTestPortFix
from ibkr_provider.plugins.routes import CONNECT_ROUTE, PORTFOLIO_ROUTE, PORTFOLIO_RUN_ROUTE
from ibkr_provider.timetables import TradingDayTimetable

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.routing import BaseRoute


class ConnectApp:
    """The Connect IBKR pages as an ASGI app that builds the real one (FastAPI,
    ``connect_app.create_connect_app``) when it is first used. Building it at import cost about
    0.4 s of CPU (FastAPI's import and the app's routes) in every process that loads the plugin,
    for pages that only the API server ever serves."""

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    def _built(self) -> FastAPI:
        # built without awaiting anything: no other request on the event loop can interleave
        if self._app is None:
            from ibkr_provider.plugins.connect_app import create_connect_app

            self._app = create_connect_app()
        return self._app

    @property
    def routes(self) -> list[BaseRoute]:
        """The app's routes: Starlette's ``Mount`` reads them to resolve ``url_for`` (the consent's
        callback URL is one)."""
        return self._built().routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._built()(scope, receive, send)


class IbkrPlugin(AirflowPlugin):
    """Fixes the UI's Test button for IBKR connections (see ``connection_test``), adds the
    "Connect IBKR" pages (see ``connect_app``) with a link in the Admin menu, the IBKR portfolio
    page (``portfolio_page``) in Browse and as a tab of every DAG run, and registers the
    trading-day timetable (Airflow serializes a custom timetable only when a plugin lists it).
    Connect IBKR shows in Airflow's frame; its consent leaves the frame for IBKR's login page,
    which must never be framed."""

    name = "ibkr"
    timetables = [TradingDayTimetable]
    fastapi_apps = [{"app": ConnectApp(), "url_prefix": "/ibkr", "name": "Connect IBKR"}]
    external_views = [
        {
            "name": "Connect IBKR",
            "href": "/ibkr/connect",
            "url_route": CONNECT_ROUTE,
            "destination": "nav",
            "category": "admin",
        },
        {
            "name": "IBKR portfolio",
            "href": "/ibkr/portfolio",
            "url_route": PORTFOLIO_ROUTE,
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "IBKR portfolio",
            "href": "/ibkr/portfolio?dag_id={DAG_ID}&run_id={RUN_ID}",
            "url_route": PORTFOLIO_RUN_ROUTE,
            "destination": "dag_run",
        },
    ]
    fastapi_root_middlewares = [
        {
            "middleware": ConnectionTestPortFix,
            "args": [],
            "kwargs": {},
            "name": "IBKR connection test port fix",
        }
    ]
