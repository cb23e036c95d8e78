"""``IbkrAccountValueEventTrigger``: an Asset event when an account's daily PnL or net
liquidation crosses a level (a drawdown guard, a margin alarm).

For an ``AssetWatcher``: it follows IBKR's profit-and-loss topic (``spl+{}``; each message's
``args`` are keyed ``<account>.Core`` with ``dpl`` daily PnL, ``nl`` net liquidation, ``upl``
unrealised PnL, ``el`` excess liquidity and ``mv`` market value, the rows of
``GET /iserver/account/pnl/partitioned``) through a shared stream
(:mod:`ibkr_provider.triggers.watching`: every account-value watcher of a connection, whatever its
account, metric or level, shares one). ``spl`` carries both
figures the issue asks for, so the account summary topic (``ssd``), whose message shape IBKR's
documentation leaves open, is not needed. It fires once per crossing per account, never while the
value stays beyond the level (:mod:`ibkr_provider.triggers.crossing`; armed state in Airflow 3.3's
asset state store, key ``armed:<account>:<metric>:<direction>:<level>``).

When IBKR refuses the socket the stream says so once and polls ``/iserver/account/pnl/partitioned``
every ``poll_interval`` seconds instead (IBKR allows 1 request per 5 s there; the client's pacer
keeps a shorter interval to that).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import TriggerEvent

from ibkr_provider.client.models.numbers import as_text
from ibkr_provider.triggers.crossing import LevelCrossing, checked_level
from ibkr_provider.triggers.watching import IbkrStreamWatcher

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient
    from ibkr_provider.client.models.portfolio import PnlRow
    from ibkr_provider.client.models.stream import StreamMessage

#: The figures a watcher can follow: ``PnlRow`` attributes (IBKR's ``dpl``, ``nl``, ``upl``, ``el``).
METRICS = ("daily_pnl", "net_liquidation", "unrealized_pnl", "excess_liquidity")


class IbkrAccountValueEventTrigger(IbkrStreamWatcher):
    """Fire when ``metric`` of ``account_id`` (every account of the login when None) goes
    ``below`` (at or under) or ``above`` (at or over) ``level``.

    The event's payload: ``account_id``, ``metric``, ``direction``, ``level``, ``value`` and the
    account's ``daily_pnl``, ``net_liquidation``, ``unrealized_pnl``, ``excess_liquidity``,
    ``market_value`` (exact strings), ``at`` (epoch seconds).
    """

    def __init__(
        self,
        *,
        level: str | float,
        metric: str = "daily_pnl",
        direction: str = "below",
        account_id: str | None = None,
        ibkr_conn_id: str = "ibkr_default",
        poll_interval: float = 60.0,
        stream_auth: str = "auto",
    ) -> None:
        super().__init__()
        if metric not in METRICS:
            raise ValueError(f"metric: {metric!r} is not one of {', '.join(METRICS)}")
        self.level = checked_level(level, direction)
        self.metric = metric
        self.direction = direction
        self.account_id = account_id
        self.ibkr_conn_id = ibkr_conn_id
        self.poll_interval = poll_interval
        self.stream_auth = stream_auth
        self._crossings: dict[str, LevelCrossing] = {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "level": self.level,
                "metric": self.metric,
                "direction": self.direction,
                "account_id": self.account_id,
                "ibkr_conn_id": self.ibkr_conn_id,
                "poll_interval": self.poll_interval,
                "stream_auth": self.stream_auth,
            },
        )

    async def _crossing(self, account_id: str) -> LevelCrossing:
        crossing = self._crossings.get(account_id)
        if crossing is None:
            key = f"armed:{account_id}:{self.metric}:{self.direction}:{self.level}"
            crossing = LevelCrossing(self.level, self.direction, key, self.asset_state_store)
            await crossing.load()
            self._crossings[account_id] = crossing
        return crossing

    async def _see(self, rows: Iterable[PnlRow]) -> list[TriggerEvent]:
        """The events for new figures: one per account whose figure is a new crossing."""
        events = []
        for row in rows:
            if self.account_id is not None and row.account_id != self.account_id:
                continue
            value = getattr(row, self.metric)
            if await (await self._crossing(row.account_id)).crossed(value):
                self.log.info(
                    "IBKR %s of %s crossed %s %s: %s",
                    self.metric,
                    row.account_id,
                    self.direction,
                    self.level,
                    value,
                )
                events.append(TriggerEvent(self._payload(row)))
        return events

    def _payload(self, row: PnlRow) -> dict[str, Any]:
        figures = {name: as_text(getattr(row, name)) for name in (*METRICS, "market_value")}
        return {
            "account_id": row.account_id,
            "metric": self.metric,
            "direction": self.direction,
            "level": self.level,
            "value": figures[self.metric],
            **figures,
            "at": time.time(),
        }

    @classmethod
    def topic(cls, kwargs: dict[str, Any]) -> str:
        return "spl+{}"

    @classmethod
    async def poll_once(cls, client: IbkrClient, kwargs: dict[str, Any]) -> StreamMessage:
        from ibkr_provider.client.models.stream import PnlUpdate

        return PnlUpdate(await asyncio.to_thread(client.iserver.pnl))

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        from ibkr_provider.client.models.stream import PnlUpdate

        async for message in shared_stream:
            if isinstance(message, PnlUpdate):
                for event in await self._see(message.rows.values()):
                    yield event
