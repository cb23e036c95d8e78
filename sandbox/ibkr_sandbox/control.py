"""The outermost ASGI layer of the sandbox: counters, injected faults and IBKR's pacing.

It sits outside FastAPI so it sees every request exactly once, including ones it answers
itself (a 429 from the penalty box, an injected 503) or drops without an answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ibkr_sandbox.loopwatch import Arrival, LoopWatch
from ibkr_sandbox.malformed import malformed
from ibkr_sandbox.market import advance_market
from ibkr_sandbox.state import SandboxState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_PREFIX = "/v1/api"


async def _answer(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _drop_connection(send: Send) -> bool:
    """Close the client's TCP connection without an answer (uvicorn's cycle holds the transport)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        return False
    transport.close()
    return True


class SandboxControl:
    """Wraps the FastAPI app; see the module docstring."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state
        self.loop_watch = LoopWatch()

    def _username(self, scope: Scope) -> str | None:
        if self.state.settings.gateway:
            return "gateway"
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value.startswith(b"OAuth ") and self.state.oauth1 is not None:
                consumer = self.state.oauth1.consumer_of(value.decode(errors="replace"))
                return consumer.credential if consumer else None
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                record = self.state.sessions.get(value[7:].decode(errors="replace").strip())
                return record.credential if record else None
        return None

    async def _handled(self, scope: Scope, receive: Receive) -> list[Message]:
        """Handle the request (it takes effect) and hold its answer's messages back."""
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await asyncio.to_thread(advance_market, self.state)
        await self.app(scope, receive, hold)
        return held

    async def _malformed(self, scope: Scope, receive: Receive, send: Send, shape: str) -> None:
        """The request is handled; its answer goes out in the fault's malformed ``shape``."""
        held = await self._handled(scope, receive)
        truth = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        body, content_type = malformed(shape, truth)
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # the raw connection, for the websocket's "drop" fault (routes/stream.py)
            scope["sandbox.transport"] = getattr(getattr(send, "__self__", None), "transport", None)
        if scope["type"] != "http" or scope["path"].startswith("/__sandbox__"):
            await self.app(scope, receive, send)
            return
        state = self.state
        method, path = scope["method"], scope["path"]
        status_seen: list[int] = []

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen.append(int(message["status"]))
            await send(message)

        # The arrival time is read first, and nothing awaits between it and the pacing check: a
        # loaded machine must not bunch requests that arrived spaced (the check then sees
        # arrivals in the order and at the times they came). The market moves in a worker
        # thread, so the event loop never waits for the state lock while requests arrive.
        arrival = self.loop_watch.arrival(time.time())
        scope["sandbox.arrival"] = arrival  # OAuth 1.0a orders timestamps by it
        state.counters.arrived(method, path)
        if any(name == b"authorization" for name, _ in scope.get("headers", [])):
            state.counters.add("requests_with_authorization")
        try:
            fault = state.faults.take(method, path)
            if fault is not None and fault.kind == "delay":
                await asyncio.sleep(fault.delay)
                arrival = scope["sandbox.arrival"] = Arrival.now()
            elif fault is not None and fault.kind == "drop":
                if _drop_connection(send):
                    return
                raise ConnectionAbortedError("injected drop")
            elif fault is not None and fault.kind == "stale":
                await _answer(counting_send, 200, fault.body, [])
                return
            elif fault is not None and fault.kind == "malformed":
                await self._malformed(scope, receive, counting_send, str(fault.body))
                return
            elif fault is not None and fault.kind == "drop_after":
                # The request takes effect (an order is placed) but its answer is lost: the
                # case a retried task must not turn into a second order.
                async def discard(message: Message) -> None:
                    return None

                await asyncio.to_thread(advance_market, state)
                await self.app(scope, receive, discard)
                if _drop_connection(send):
                    return
                raise ConnectionAbortedError("injected drop after handling")
            elif fault is not None and fault.kind == "delay_after":
                # The request takes effect at once and its answer comes ``delay`` seconds later:
                # a window in which the caller can die mid-request (a worker killed while
                # placing an order) after IBKR already acted on it.
                held = await self._handled(scope, receive)
                await asyncio.sleep(fault.delay)
                for message in held:
                    await counting_send(message)
                return
            elif fault is not None:
                status = int(fault.kind)
                headers = []
                if fault.retry_after is not None:
                    headers.append((b"retry-after", str(round(fault.retry_after)).encode()))
                text = {401: "not authenticated", 410: "gone", 429: "Too Many Requests"}.get(
                    status, "Service Unavailable" if status == 503 else "error"
                )
                await _answer(counting_send, status, {"error": text, "statusCode": status}, headers)
                return
            if path.startswith(API_PREFIX):
                username = self._username(scope)
                if username is not None:
                    if arrival.earliest < arrival.read:
                        state.counters.add("arrivals_after_a_stall")
                    wait = state.admit(username, method, path[len(API_PREFIX) :], arrival)
                    if wait is not None:
                        headers = []
                        if state.settings.retry_after_header:
                            headers.append((b"retry-after", str(max(1, round(wait))).encode()))
                        await _answer(
                            counting_send, 429, {"error": "Too Many Requests", "statusCode": 429}, headers
                        )
                        return
            await asyncio.to_thread(advance_market, state)
            await self.app(scope, receive, counting_send)
        finally:
            if status_seen and status_seen[0] in (401, 410, 429):
                state.counters.add(f"http_{status_seen[0]}")
