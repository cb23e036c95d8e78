"""The provider's Airflow plugin (entry point ``airflow.plugins``), loaded by the API server.

Importing it stays cheap: the pieces it wires load only what they need when a request comes.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from ibkr_provider.plugins.connect_app import create_connect_app
from ibkr_provider.plugins.connection_test import ConnectionTestPortFix


class IbkrPlugin(AirflowPlugin):
    """Fixes the UI's Test button for IBKR connections (see ``connection_test``) and adds the
    "Connect IBKR" pages (see ``connect_app``) with a link in the Admin menu. The link opens the
    page itself, not an iframe: IBKR's login page must never be framed."""

    name = "ibkr"
    fastapi_apps = [{"app": create_connect_app(), "url_prefix": "/ibkr", "name": "Connect IBKR"}]
    external_views = [
        {
            "name": "Connect IBKR",
            "href": "/ibkr/connect",
            "destination": "nav",
            "category": "admin",
        }
    ]
    fastapi_root_middlewares = [
        {
            "middleware": ConnectionTestPortFix,
            "args": [],
            "kwargs": {},
            "name": "IBKR connection test port fix",
        }
    ]
