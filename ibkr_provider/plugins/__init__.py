"""The provider's Airflow plugin (entry point ``airflow.plugins``), loaded by the API server.

Importing it stays cheap: the pieces it wires load only what they need when a request comes.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from ibkr_provider.plugins.connection_test import ConnectionTestPortFix


class IbkrPlugin(AirflowPlugin):
    """Fixes the UI's Test button for IBKR connections (see ``connection_test``)."""

    name = "ibkr"
    fastapi_root_middlewares = [
        {
            "middleware": ConnectionTestPortFix,
            "args": [],
            "kwargs": {},
            "name": "IBKR connection test port fix",
        }
    ]
