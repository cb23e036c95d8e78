"""``IbkrOrderStatusTrigger``: wait in the triggerer until an order reaches a terminal state.

Orders are always placed on a worker; here the order is only watched (a triggerer restart
re-runs ``run()``, which is harmless for a read). The blocking client calls run in a thread, so
the triggerer's event loop is never blocked.

With ``use_stream`` (the default) the order is followed on IBKR's websocket (``sor``), one
socket per IBKR session shared by every trigger in the triggerer
(:mod:`ibkr_provider.triggers.streams`): a fill is seen as IBKR pushes it, and no request is
spent while the order rests. Each time the socket (re)connects the order's status is read once
by REST, so a fill that happened before the subscription or while the socket was down is never
missed. When the stream is unavailable (IBKR refused the socket, reconnects ran out) the
trigger says so once in its log and polls ``/iserver/account/order/status`` every
``poll_interval`` seconds instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from airflow.sdk.log import amask_secret
from airflow.triggers.base import BaseTrigger, TriggerEvent

from ibkr_provider.client.errors import IbkrError

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient
    from ibkr_provider.client.models.orders import OrderStatus
    from ibkr_provider.hooks.ibkr import IbkrHook


class IbkrOrderStatusTrigger(BaseTrigger):
    """Follow one order on IBKR's websocket, or poll its status every ``poll_interval`` seconds.

    Yields one event: ``{"status": "success", "order_id", "order_status", "filled", "raw"}`` for
    a terminal state, ``{"status": "timeout", ...}`` at ``deadline`` (epoch seconds), or
    ``{"status": "error", "message", "permanent"}`` when IBKR fails (``permanent``: a retry of
    the task cannot help).
    """

    def __init__(
        self,
        *,
        order_id: str,
        ibkr_conn_id: str,
        poll_interval: float = 30.0,
        deadline: float | None = None,
        use_stream: bool = True,
        stream_auth: str = "auto",
        stream_silence_seconds: float = 45.0,
    ) -> None:
        super().__init__()
        self.order_id = order_id
        self.ibkr_conn_id = ibkr_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.use_stream = use_stream
        self.stream_auth = stream_auth
        self.stream_silence_seconds = stream_silence_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "order_id": self.order_id,
                "ibkr_conn_id": self.ibkr_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "use_stream": self.use_stream,
                "stream_auth": self.stream_auth,
                "stream_silence_seconds": self.stream_silence_seconds,
            },
        )

    def _hook(self) -> IbkrHook:
        from ibkr_provider.hooks.ibkr import IbkrHook

        return IbkrHook(ibkr_conn_id=self.ibkr_conn_id)

    def _ended(self, status: OrderStatus) -> TriggerEvent | None:
        """The event for ``status``: success when terminal, timeout past the deadline."""
        if status.status.terminal:
            return TriggerEvent({"status": "success", **status.summary(), "raw": dict(status.raw)})
        if self.deadline is not None and time.time() >= self.deadline:
            return TriggerEvent(
                {"status": "timeout", "order_id": self.order_id, "order_status": status.status_text}
            )
        return None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        pending: list[str] = []
        client: IbkrClient | None = None

        async def status() -> OrderStatus:
            assert client is not None
            found = await asyncio.to_thread(client.orders.status, self.order_id)
            while pending:
                await amask_secret(pending.pop())
            return found

        try:
            # the hook's first import (Airflow's hook base, the provider's hook) off the loop
            hook = await asyncio.to_thread(self._hook)
            client = await hook.aget_client(pending.append)
            if self.use_stream:
                event = await self._follow_stream(client, status)
                if event is not None:
                    yield event
                    return
            while True:
                found = await status()
                event = self._ended(found)
                if event is not None:
                    yield event
                    return
                self.log.info(
                    "order %s is %s; checking again in %.0f s",
                    self.order_id,
                    found.status_text,
                    self.poll_interval,
                )
                await asyncio.sleep(self.poll_interval)
        except IbkrError as exc:
            yield TriggerEvent(
                {
                    "status": "error",
                    "order_id": self.order_id,
                    "message": f"{type(exc).__name__}: {exc}. Check {exc.hint}",
                    "permanent": exc.permanent,
                }
            )
        finally:
            if client is not None:
                await asyncio.to_thread(client.close)

    async def _follow_stream(
        self, client: IbkrClient, status: Callable[[], Awaitable[OrderStatus]]
    ) -> TriggerEvent | None:
        """The order's end as the websocket tells it (or the deadline); None when the stream is
        unavailable, after saying so once: the caller polls instead."""
        from ibkr_provider.client.models.stream import OrderUpdates
        from ibkr_provider.client.stream.hub import StreamState
        from ibkr_provider.triggers.streams import session_hub

        hub = session_hub(client, self.ibkr_conn_id, self.stream_auth, self.stream_silence_seconds)
        async with hub.listen("sor+{}") as listener:
            while True:
                left = None if self.deadline is None else max(self.deadline - time.time(), 0.0)
                try:
                    message = await asyncio.wait_for(listener.next(), timeout=left)
                except TimeoutError:
                    return self._ended(await status())
                if isinstance(message, StreamState):
                    if message.kind == "unavailable":
                        self.log.warning(
                            "IBKR's websocket is unavailable (%s): polling order %s every %g s instead",
                            message.reason,
                            self.order_id,
                            self.poll_interval,
                        )
                        return None
                    # (re)connected: whatever happened before is read once by REST
                    found = await status()
                    event = self._ended(found)
                    if event is not None:
                        return event
                    what = "reconnected" if message.reconnected else "connected"
                    self.log.info(
                        "order %s is %s; following it on IBKR's websocket (%s)",
                        self.order_id,
                        found.status_text,
                        what,
                    )
                elif isinstance(message, OrderUpdates):
                    for order in message.orders:
                        if order.order_id == self.order_id and order.status.terminal:
                            summary = {
                                "order_id": order.order_id,
                                "order_status": order.status.value,
                                "filled": order.filled,
                            }
                            return TriggerEvent({"status": "success", **summary, "raw": dict(order.raw)})
