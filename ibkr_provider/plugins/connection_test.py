"""Make the Airflow UI's Test button work for IBKR connections.

Airflow 3.3's connection list posts ``"port": 0`` when it tests a connection whose stored port is
empty, and the API then refuses: "The host or port to test differs from the stored connection.
Include the credentials to test in the request body." (``POST /api/v2/connections/test``
compares the posted host and port with the stored ones.) IBKR connections carry their port in the
host URL and store none, so every connection added through the form hit this.

This ASGI middleware, added to the API server by the provider's plugin, drops a posted port of 0
from test requests for IBKR connections (``ibkr``, ``ibkr_oauth2``, ... and ``ibkr_flex``), so the
stored (empty) port is used; nothing else is touched. It also tells the hook which connection the
request tests (``TESTED_CONN_ID``: Airflow hands the hook a random transient id), so a session a
Test opens names its real connection. Connections the provider writes itself (the sandbox's, ``make up``'s)
also store the port of their host URL, so they test fine even without the plugin.
"""

from __future__ import annotations

import json
from typing import Any

from ibkr_provider.connection_fields import IBKR_CONN_TYPES
from ibkr_provider.hooks.names import TESTED_CONN_ID
from ibkr_provider.plugins.asgi import ASGIApp, Message, Receive, Scope, Send

IBKR_CONNECTION_TYPES = frozenset({*IBKR_CONN_TYPES, "ibkr_flex"})
TEST_PATH = "/api/v2/connections/test"


def ibkr_test_body(body: bytes) -> dict[str, Any] | None:
    """The test request's JSON when it tests an IBKR connection type, else None."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to parse: Airflow answers it
        return None
    if not isinstance(data, dict) or data.get("conn_type") not in IBKR_CONNECTION_TYPES:
        return None
    return data


def without_zero_port(body: bytes) -> bytes | None:
    """The request body without ``"port": 0`` for an IBKR connection type, or None to keep it."""
    data = ibkr_test_body(body)
    if data is None or data.get("port") not in (0, "0"):
        return None
    del data["port"]
    return json.dumps(data).encode()


class ConnectionTestPortFix:
    """See the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith(TEST_PATH):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        original = b"".join(chunks)
        body = without_zero_port(original) or original
        tested = ibkr_test_body(original)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        # the hook learns which connection it tests (Airflow gives it a random transient id)
        token = TESTED_CONN_ID.set(str(tested.get("connection_id") or "") or None) if tested else None
        try:
            await self.app({**scope, "headers": headers}, replay, send)
        finally:
            if token is not None:
                TESTED_CONN_ID.reset(token)
