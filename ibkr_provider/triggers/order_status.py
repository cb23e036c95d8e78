"""``IbkrOrderStatusTrigger``: wait in the triggerer until an order reaches a terminal state.

Only status polling runs here; orders are always placed on a worker (a triggerer restart
re-runs ``run()``, which is harmless for a read). The blocking client calls run in a thread,
so the triggerer's event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.sdk.log import amask_secret
from airflow.triggers.base import BaseTrigger, TriggerEvent

from ibkr_provider.client.errors import IbkrError

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient
    from ibkr_provider.hooks.ibkr import IbkrHook


class IbkrOrderStatusTrigger(BaseTrigger):
    """Poll ``/iserver/account/order/status/{orderId}`` every ``poll_interval`` seconds.

    Yields one event: ``{"status": "success", "order_id", "order_status", "filled", "raw"}`` for
    a terminal state, ``{"status": "timeout", ...}`` at ``deadline`` (epoch seconds), or
    ``{"status": "error", "message", "permanent"}`` when IBKR fails (``permanent``: a retry of
    the task cannot help).
    """

    def __init__(
        self, *, order_id: str, ibkr_conn_id: str, poll_interval: float = 30.0, deadline: float | None = None
    ) -> None:
        super().__init__()
        self.order_id = order_id
        self.ibkr_conn_id = ibkr_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "order_id": self.order_id,
                "ibkr_conn_id": self.ibkr_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
            },
        )

    def _hook(self) -> IbkrHook:
        from ibkr_provider.hooks.ibkr import IbkrHook

        return IbkrHook(ibkr_conn_id=self.ibkr_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        pending: list[str] = []
        client: IbkrClient | None = None
        try:
            # the hook's first import (Airflow's hook base, the provider's hook) off the loop
            hook = await asyncio.to_thread(self._hook)
            client = await hook.aget_client(pending.append)
            while True:
                status = await asyncio.to_thread(client.orders.status, self.order_id)
                while pending:
                    await amask_secret(pending.pop())
                if status.status.terminal:
                    yield TriggerEvent({"status": "success", **status.summary(), "raw": dict(status.raw)})
                    return
                if self.deadline is not None and time.time() >= self.deadline:
                    yield TriggerEvent(
                        {"status": "timeout", "order_id": self.order_id, "order_status": status.status_text}
                    )
                    return
                self.log.info(
                    "order %s is %s; checking again in %.0f s",
                    self.order_id,
                    status.status_text,
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
