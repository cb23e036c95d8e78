"""Which hub serves a session: one per (event loop, session key), the invariant of
:mod:`ibkr_provider.client.stream.hub`. A triggerer runs every trigger in one loop, so every
trigger of a session finds the same hub; a test's ``asyncio.run`` gets hubs of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ibkr_provider.client.stream.hub import StreamHub, StreamOptions
from ibkr_provider.client.stream.login import StreamLogin

_HUBS: dict[tuple[int, str], StreamHub] = {}


def hub_for(
    session_key: str, login: Callable[[], Awaitable[StreamLogin]], options: StreamOptions | None = None
) -> StreamHub:
    """The hub of ``session_key`` in the running event loop (created on first use; the first
    caller's login and options stand)."""
    key = (id(asyncio.get_running_loop()), session_key)
    hub = _HUBS.get(key)
    if hub is None:
        hub = _HUBS[key] = StreamHub(login, options)
    return hub
