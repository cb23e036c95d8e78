"""``IbkrPriceCrossingEventTrigger``: an Asset event when a price crosses a level.

For an ``AssetWatcher``: it follows IBKR's market data (``smd+CONID``, field 31: last) on the
session's shared websocket and fires once per crossing, never on a state that stays true: after
a crossing it is disarmed until the price is back on the other side of the level. A price
already beyond the level when the watcher starts is not a crossing. The armed state is kept in
Airflow 3.3's asset state store (``armed:<conid>:<direction>:<level>``; the rule:
:mod:`ibkr_provider.triggers.crossing`).

IBKR ends an ``smd`` subscription after 10 minutes (Web API changelog, 2026-04-14): it is sent
again every ``resubscribe_seconds`` (540). When IBKR refuses the socket, the watcher says so once
and polls a market-data snapshot every ``poll_interval`` seconds instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from ibkr_provider.client.models.numbers import as_text
from ibkr_provider.triggers.crossing import LevelCrossing, checked_level

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient


class IbkrPriceCrossingEventTrigger(BaseEventTrigger):
    """Fire when ``conid``'s last price goes ``above`` (at or over) or ``below`` (at or under)
    ``level``. The event's payload: ``conid``, ``direction``, ``level``, ``price``, ``at``."""

    def __init__(
        self,
        *,
        conid: int,
        level: str | float,
        direction: str = "above",
        ibkr_conn_id: str = "ibkr_default",
        poll_interval: float = 30.0,
        resubscribe_seconds: float = 540.0,
        stream_auth: str = "auto",
    ) -> None:
        super().__init__()
        self.level = checked_level(level, direction)
        self.conid = int(conid)
        self.direction = direction
        self.ibkr_conn_id = ibkr_conn_id
        self.poll_interval = poll_interval
        self.resubscribe_seconds = resubscribe_seconds
        self.stream_auth = stream_auth

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conid": self.conid,
                "level": self.level,
                "direction": self.direction,
                "ibkr_conn_id": self.ibkr_conn_id,
                "poll_interval": self.poll_interval,
                "resubscribe_seconds": self.resubscribe_seconds,
                "stream_auth": self.stream_auth,
            },
        )

    async def _see(self, crossing: LevelCrossing, price: Decimal | None) -> TriggerEvent | None:
        """The event for a new price, if it is a new crossing."""
        if not await crossing.crossed(price):
            return None
        self.log.info("IBKR price of %s crossed %s %s: %s", self.conid, self.direction, self.level, price)
        return TriggerEvent(
            {
                "conid": self.conid,
                "direction": self.direction,
                "level": self.level,
                "price": as_text(price),
                "at": time.time(),
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from ibkr_provider.client.models.stream import MarketTick
        from ibkr_provider.client.stream.hub import StreamState
        from ibkr_provider.triggers.streams import session_hub, trigger_client

        crossing = LevelCrossing(
            self.level,
            self.direction,
            f"armed:{self.conid}:{self.direction}:{self.level}",
            self.asset_state_store,
        )
        await crossing.load()
        client = await trigger_client(self.ibkr_conn_id)
        topic = f'smd+{self.conid}+{{"fields":["31"]}}'
        try:
            hub = session_hub(client, self.ibkr_conn_id, self.stream_auth)
            async with hub.listen(topic) as listener:
                resubscribe_at = time.monotonic() + self.resubscribe_seconds
                while True:
                    try:
                        message = await asyncio.wait_for(
                            listener.next(), timeout=max(resubscribe_at - time.monotonic(), 0.01)
                        )
                    except TimeoutError:
                        await hub.resend(topic)  # IBKR ends smd subscriptions after 10 minutes
                        resubscribe_at = time.monotonic() + self.resubscribe_seconds
                        continue
                    if isinstance(message, StreamState) and message.kind == "unavailable":
                        self.log.warning(
                            "IBKR's websocket is unavailable (%s): polling %s's price every %g s instead",
                            message.reason,
                            self.conid,
                            self.poll_interval,
                        )
                        break
                    if isinstance(message, MarketTick) and message.conid == self.conid:
                        event = await self._see(crossing, message.last)
                        if event is not None:
                            yield event
            async for event in self._poll(client, crossing):
                yield event
        finally:
            await asyncio.to_thread(client.close)

    async def _poll(self, client: IbkrClient, crossing: LevelCrossing) -> AsyncIterator[TriggerEvent]:
        while True:
            quotes = await asyncio.to_thread(client.market_data.snapshot, [self.conid])
            quote = quotes.get(self.conid)
            event = await self._see(crossing, quote.last if quote is not None else None)
            if event is not None:
                yield event
            await asyncio.sleep(self.poll_interval)
