"""The plugin's middleware drops the UI's ``"port": 0`` from IBKR connection tests, and only that.

The whole path (a real browser pressing Test on a connection added through the form, against
`airflow standalone` with the plugin loaded) is tests/e2e/test_make_up.py. The plugin package is
imported in the tests, not at collection (it loads Airflow: about 3 s of CPU per xdist worker).
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient


async def _echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse(
        {"body": json.loads(body), "length": request.headers["content-length"], "raw": len(body)}
    )


@pytest.fixture
def client() -> TestClient:
    from ibkr_provider.plugins.connection_test import ConnectionTestPortFix

    routes = [
        Route("/api/v2/connections/test", _echo, methods=["POST"]),
        Route("/other", _echo, methods=["POST"]),
    ]
    return TestClient(ConnectionTestPortFix(Starlette(routes=routes)))


@pytest.mark.parametrize("conn_type", ["ibkr", "ibkr_flex"])
def test_a_zero_port_is_dropped_for_ibkr_types(client: TestClient, conn_type: str) -> None:
    sent = {
        "connection_id": "c",
        "conn_type": conn_type,
        "host": "https://api.ibkr.com",
        "port": 0,
        "extra": "{}",
    }
    seen = client.post("/api/v2/connections/test", json=sent).json()
    assert seen["body"] == {k: v for k, v in sent.items() if k != "port"}
    assert int(seen["length"]) == seen["raw"]  # the header matches the shorter body


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v2/connections/test", {"conn_type": "http", "host": "h", "port": 0}),  # not ours
        ("/api/v2/connections/test", {"conn_type": "ibkr", "host": "h", "port": 5000}),  # a real port
        ("/other", {"conn_type": "ibkr", "host": "h", "port": 0}),  # another endpoint
    ],
)
def test_everything_else_passes_unchanged(client: TestClient, path: str, body: dict[str, object]) -> None:
    assert client.post(path, json=body).json()["body"] == body


def test_the_plugin_is_registered_for_the_api_server() -> None:
    from ibkr_provider.plugins import IbkrPlugin
    from ibkr_provider.plugins.connection_test import ConnectionTestPortFix

    (entry,) = [e for e in entry_points(group="airflow.plugins") if e.name == "ibkr"]
    assert entry.load() is IbkrPlugin
    assert [m["middleware"] for m in IbkrPlugin.fastapi_root_middlewares] == [ConnectionTestPortFix]


def test_the_connect_pages_build_on_first_use_and_resolve_under_their_mount() -> None:
    """Airflow mounts the plugin's app under /ibkr; the consent's callback URL and every link and
    form target of the pages come from ``url_for``, which the mount resolves through the app's
    routes (built on first use). The names are the provider's own: a route name is looked up
    across every route of the API server."""
    from starlette.routing import Mount

    from ibkr_provider.plugins import ConnectApp, IbkrPlugin

    (mounted,) = IbkrPlugin.fastapi_apps
    assert isinstance(mounted["app"], ConnectApp) and mounted["url_prefix"] == "/ibkr"
    root = Starlette(routes=[Mount("/ibkr", app=ConnectApp())])
    assert root.url_path_for("ibkr_connect_callback") == "/ibkr/connect/callback"
    assert root.url_path_for("ibkr_connect") == "/ibkr/connect"
    assert root.url_path_for("ibkr_connect_start") == "/ibkr/connect/start"
    assert root.url_path_for("ibkr_disconnect") == "/ibkr/connect/disconnect"


def test_a_deeply_nested_body_is_passed_on_untouched() -> None:
    """json.loads raises RecursionError (not ValueError) on deep nesting: it was a 500 and a
    RecursionError in the API server's log (issue 30). The middleware now hands it on as sent."""
    from ibkr_provider.plugins.connection_test import ConnectionTestPortFix

    async def length(request: Request) -> JSONResponse:
        return JSONResponse({"raw": len(await request.body())})

    app = ConnectionTestPortFix(
        Starlette(routes=[Route("/api/v2/connections/test", length, methods=["POST"])])
    )
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = TestClient(app).post("/api/v2/connections/test", content=deep)
    assert answer.status_code == 200 and answer.json() == {"raw": len(deep)}
