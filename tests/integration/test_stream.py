"""IBKR's websocket against the sandbox's ``/v1/api/ws``, over real sockets: each auth type logs
in its own way, fifty listeners share one socket, an order's fill arrives as ``sor`` and ``str``
messages, and every fault the sandbox can inject ends in a reconnect, or, for a refused login,
in ``unavailable`` (issue 23)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrClient
from ibkr_provider.client.models.orders import OrderTicket
from ibkr_provider.client.models.stream import OrderUpdates, Trades
from ibkr_provider.client.stream.hub import Listener, StreamHub, StreamOptions, StreamState
from ibkr_provider.client.stream.login import StreamAuth, StreamLogin, stream_login

MakeClient = Callable[..., IbkrClient]
VTI = 12340038
FAST = StreamOptions(
    silence_seconds=1.5, tic_seconds=0.5, max_reconnects=3, backoff_initial=0.05, backoff_max=0.2
)


def _hub(client: IbkrClient, mode: StreamAuth = StreamAuth.AUTO, options: StreamOptions = FAST) -> StreamHub:
    async def login() -> StreamLogin:
        return await asyncio.to_thread(stream_login, client, mode)

    return StreamHub(login, options)


async def _until(listener: Listener, wanted: Callable[[Any], bool], seconds: float = 10) -> Any:
    async def scan() -> Any:
        while True:
            event = await listener.next()
            if wanted(event):
                return event

    return await asyncio.wait_for(scan(), timeout=seconds)


def _connected(reconnected: bool) -> Callable[[Any], bool]:
    return lambda e: isinstance(e, StreamState) and e.kind == "connected" and e.reconnected is reconnected


def _filled(order_id: str) -> Callable[[Any], bool]:
    return lambda e: (
        isinstance(e, OrderUpdates)
        and any(o.order_id == order_id and o.status.value == "Filled" for o in e.orders)
    )


@pytest.mark.parametrize("kind", ["oauth2", "oauth1a", "gateway"])
def test_each_auth_type_logs_in_and_sees_its_fill_as_it_happens(
    kind: str,
    request: pytest.FixtureRequest,
    make_client: MakeClient,
) -> None:
    sandbox: RunningSandbox = request.getfixturevalue(
        {"oauth2": "fresh_sandbox", "oauth1a": "fresh_oauth1_sandbox", "gateway": "gateway_sandbox"}[kind]
    )
    client = make_client(sandbox)
    hub = _hub(client, options=StreamOptions(**{**FAST.__dict__, "verify": client.config.verify}))

    async def scenario() -> tuple[float, Any]:
        async with hub.listen("sor+{}", "str+{}") as listener:
            await _until(listener, _connected(False))
            started = time.monotonic()
            ticket = OrderTicket(conid=VTI, side="BUY", quantity=1, coid=f"ws-{kind}-{time.time_ns()}")
            placed = await asyncio.to_thread(client.orders.place, "DU2345678", ticket)
            await _until(listener, _filled(placed.order_id))
            latency = time.monotonic() - started
            trades = await _until(
                listener, lambda e: isinstance(e, Trades) and any(x.coid == ticket.coid for x in e.executions)
            )
            return latency, trades

    latency, trades = asyncio.run(scenario())
    (execution,) = [x for x in trades.executions if x.coid.startswith("ws-")][-1:]
    assert execution.size == 1 and execution.commission is not None
    assert latency < 5  # the placement's own REST round trips included
    assert hub.connections == 1


def test_fifty_listeners_share_one_socket_and_it_closes_with_the_last(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox)
    hub = _hub(client)

    async def scenario() -> int:
        async with ManyListeners(hub, 50) as listeners:
            await asyncio.gather(*(_until(listener, _connected(False)) for listener in listeners))
            return int(fresh_sandbox.stats().get("ws_connections", 0))

    assert asyncio.run(scenario()) == 1
    deadline = time.monotonic() + 5
    while fresh_sandbox.stats()["ws_open"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fresh_sandbox.stats()["ws_open"] == 0


class ManyListeners:
    """``n`` listeners of one hub, all left on exit."""

    def __init__(self, hub: StreamHub, n: int) -> None:
        self.stack = contextlib.AsyncExitStack()
        self.hub, self.n = hub, n

    async def __aenter__(self) -> list[Listener]:
        return [await self.stack.enter_async_context(self.hub.listen("sor+{}")) for _ in range(self.n)]

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.aclose()


@pytest.mark.parametrize("fault", ["drop", "malformed", "silence", "close"])
def test_a_broken_socket_reconnects_and_says_so(
    fault: str, fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    hub = _hub(make_client(fresh_sandbox))

    async def scenario() -> None:
        async with hub.listen("sor+{}") as listener:
            await _until(listener, _connected(False))
            assert await asyncio.to_thread(fresh_sandbox.ws_fault, fault) == 1
            await _until(listener, _connected(True))

    asyncio.run(scenario())
    assert hub.connections == 2


def test_a_refused_login_is_unavailable_at_once(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    """A session message the sandbox does not know (cookie-less login under OAuth 2.0): IBKR closes
    with 1008, which no reconnect fixes."""

    async def login() -> StreamLogin:
        return StreamLogin(url=fresh_sandbox.base_url.replace("http", "ws") + "/v1/api/ws", session="nobody")

    hub = StreamHub(login, FAST)

    async def scenario() -> StreamState:
        async with hub.listen("sor+{}") as listener:
            state: StreamState = await _until(listener, lambda e: isinstance(e, StreamState), seconds=15)
            return state

    state = asyncio.run(scenario())
    assert state.kind == "unavailable" and "1008" in state.reason
    assert fresh_sandbox.stats()["ws_refused"] == 1


def test_a_listener_joining_a_socket_already_up_is_told_it_is_connected(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    """An order wait starting while another trigger of the session holds the socket reads its
    order once when it joins, as on a fresh connect (it waited forever before)."""
    hub = _hub(make_client(fresh_sandbox))

    async def scenario() -> None:
        async with hub.listen("str+{}") as first:
            await _until(first, _connected(False))
            async with hub.listen("sor+{}") as second:
                await _until(second, _connected(False), seconds=2)

    asyncio.run(scenario())
    assert hub.connections == 1
