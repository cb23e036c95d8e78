"""The triggerer's websocket hubs: one per IBKR session in the triggerer's event loop, shared by
every trigger of that session (:mod:`ibkr_provider.client.stream.hub`).

A hub outlives the trigger that opened it, so its login never borrows a trigger's client: each
(re)connect builds a client of its own from the connection, takes the login the auth type needs
(:func:`~ibkr_provider.client.stream.login.stream_login`, in a thread) and closes that client.
Every secret it meets goes to the masker with ``amask_secret`` (the blocking one is unsafe in
the triggerer).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from airflow.sdk.log import amask_secret

from ibkr_provider.client.stream.hub import StreamHub, StreamOptions
from ibkr_provider.client.stream.login import StreamAuth, StreamLogin, stream_login
from ibkr_provider.client.stream.registry import hub_for

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient


def session_hub(
    client: IbkrClient, ibkr_conn_id: str, stream_auth: str = "auto", silence_seconds: float = 45.0
) -> StreamHub:
    """The hub of ``client``'s session in the running loop (created on first use; the first
    caller's options stand)."""
    mode = StreamAuth.parse(stream_auth)

    async def login() -> StreamLogin:
        from ibkr_provider.hooks.ibkr import IbkrHook

        pending: list[str] = []
        hook = await asyncio.to_thread(IbkrHook, ibkr_conn_id=ibkr_conn_id)
        own = await hook.aget_client(pending.append)
        try:
            answer = await asyncio.to_thread(stream_login, own, mode)
        finally:
            await asyncio.to_thread(own.close)
            for secret in pending:
                await amask_secret(secret)
        for secret in answer.secrets:
            await amask_secret(secret)
        return answer

    options = StreamOptions(verify=client.config.verify, silence_seconds=silence_seconds)
    return hub_for(client.session_key, login, options)


async def trigger_client(ibkr_conn_id: str) -> IbkrClient:
    """A client for a trigger, built off the event loop, its secrets given to the masker (the
    caller closes it, in a thread)."""
    from ibkr_provider.hooks.ibkr import IbkrHook

    pending: list[str] = []
    hook = await asyncio.to_thread(IbkrHook, ibkr_conn_id=ibkr_conn_id)
    client = await hook.aget_client(pending.append)
    for secret in pending:
        await amask_secret(secret)
    return client
