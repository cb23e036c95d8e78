"""``IbkrPriceCrossingEventTrigger``: an Asset event when a price crosses a level.

For an ``AssetWatcher``: it follows IBKR's market data (``smd+CONID``, field 31: last) through a
shared stream (:mod:`ibkr_provider.triggers.watching`) and fires once per crossing, never on a
state that stays true: after a crossing it is disarmed until the price is back on the other side
of the level. A price already beyond the level when the watcher starts is not a crossing. The
armed state is kept in Airflow 3.3's asset state store (``armed:<conid>:<direction>:<level>``;
the rule: :mod:`ibkr_provider.triggers.crossing`).

IBKR ends an ``smd`` subscription after 10 minutes (Web API changelog, 2026-04-14): it is sent
again every ``resubscribe_seconds`` (540). When IBKR refuses the socket, the stream says so once
and polls a market-data snapshot every ``poll_interval`` seconds instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import TriggerEvent

from ibkr_provider.client.models.numbers import as_text
from ibkr_provider.triggers.crossing import LevelCrossing, checked_level
from ibkr_provider.triggers.watching import IbkrStreamWatcher

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient
    from ibkr_provider.client.models.stream import StreamMessage


class IbkrPriceCrossingEventTrigger(IbkrStreamWatcher):
    """Fire when ``conid``'s last price goes ``above`` (at or over) or ``below`` (at or under)
    ``level``. The event's payload: ``conid``, ``direction``, ``level``, ``price``, ``at``.
    Watchers of one conid (different levels) share one stream."""

    stream_fields = ("ibkr_conn_id", "stream_auth", "poll_interval", "conid", "resubscribe_seconds")

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

    @classmethod
    def topic(cls, kwargs: dict[str, Any]) -> str:
        return f'smd+{kwargs["conid"]}+{{"fields":["31"]}}'

    @classmethod
    def resubscribe_every(cls, kwargs: dict[str, Any]) -> float | None:
        return float(kwargs["resubscribe_seconds"])  # IBKR ends smd subscriptions after 10 minutes

    @classmethod
    async def poll_once(cls, client: IbkrClient, kwargs: dict[str, Any]) -> StreamMessage:
        from ibkr_provider.client.models.stream import MarketTick

        conid = int(kwargs["conid"])
        quote = (await asyncio.to_thread(client.market_data.snapshot, [conid])).get(conid)
        return MarketTick(
            conid=conid, last=quote.last if quote else None, bid=None, ask=None, updated_ms=None
        )

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        from ibkr_provider.client.models.stream import MarketTick

        crossing = LevelCrossing(
            self.level,
            self.direction,
            f"armed:{self.conid}:{self.direction}:{self.level}",
            self.asset_state_store,
        )
        await crossing.load()
        async for message in shared_stream:
            if isinstance(message, MarketTick) and message.conid == self.conid:
                event = await self._see(crossing, message.last)
                if event is not None:
                    yield event
