"""``IbkrFillEventTrigger``: an Asset event for every new fill, for DAGs that run on IBKR events.

Use it in an ``AssetWatcher``; a DAG scheduled on the asset runs once per fill::

    FILLS = Asset(
        name="ibkr_fills",
        watchers=[AssetWatcher(name="ibkr_fills", trigger=IbkrFillEventTrigger(ibkr_conn_id="ibkr_default"))],
    )

It listens to IBKR's ``str`` topic through a shared stream (:mod:`ibkr_provider.triggers.watching`:
fill watchers of one connection, one per account say, share one stream, and every stream of a
session is one socket). When it starts it reads IBKR's fills of the last 7 days once by REST:
IBKR's replay on subscribe reaches only a stream's first watcher.

It fires once per new thing, never on a state that stays true: an execution id it has fired
(IBKR replays the last 7 days on every subscribe) fires nothing. The ids fired are kept
in Airflow 3.3's asset state store (key ``seen_execution_ids``), so a triggerer restart does not
fire the replayed fills again. An id is stored ``confirm_seconds`` after its event was handed to
Airflow, which writes trigger events to its database asynchronously: a triggerer killed before
then fires that fill again after the restart instead of losing it (at least once; seen in the
cluster test: a kill a second after a fill lost its event when the id was stored at once). The
trade journal keeps one row per execution id however many runs it reaches.

When IBKR refuses the socket the stream says so once and polls ``/iserver/account/trades`` (7
days, every account; IBKR paces it at 1 per 5 s) every ``poll_interval`` seconds instead, one
poll for all the watchers of the stream. The kwargs carry no
secret: the connection id only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import TriggerEvent

from ibkr_provider.client.errors import IbkrError
from ibkr_provider.triggers.watching import IbkrStreamWatcher

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient
    from ibkr_provider.client.models.executions import Execution
    from ibkr_provider.client.models.stream import StreamMessage

#: The asset state store key of the execution ids already fired.
SEEN_KEY = "seen_execution_ids"


class IbkrFillEventTrigger(IbkrStreamWatcher):
    """One event per new execution of ``account_id`` (every account of the login when None).

    The event's payload is the execution: ``execution_id``, ``coid``, ``account_id``,
    ``conid``, ``symbol``, ``side``, ``size``, ``price``, ``commission``, ``net_amount``,
    ``time`` (amounts as exact strings); a DAG reads it from
    ``triggering_asset_events[asset][0].extra["payload"]``.

    :param keep: how many execution ids to remember (IBKR replays 7 days of fills).
    """

    def __init__(
        self,
        *,
        ibkr_conn_id: str = "ibkr_default",
        account_id: str | None = None,
        poll_interval: float = 30.0,
        stream_auth: str = "auto",
        keep: int = 5000,
        confirm_seconds: float = 5.0,
    ) -> None:
        super().__init__()
        self.ibkr_conn_id = ibkr_conn_id
        self.account_id = account_id
        self.poll_interval = poll_interval
        self.stream_auth = stream_auth
        self.keep = keep
        self.confirm_seconds = confirm_seconds
        self._seen: list[str] = []
        #: (monotonic time fired, execution id): stored once Airflow has had time to save them
        self._fired: list[tuple[float, str]] = []

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "ibkr_conn_id": self.ibkr_conn_id,
                "account_id": self.account_id,
                "poll_interval": self.poll_interval,
                "stream_auth": self.stream_auth,
                "keep": self.keep,
                "confirm_seconds": self.confirm_seconds,
            },
        )

    async def _load_seen(self) -> None:
        if self.asset_state_store is not None:
            stored = await self.asset_state_store.aget(SEEN_KEY, [])
            self._seen = [str(x) for x in stored] if isinstance(stored, list) else []

    def _fire(self, execution: Execution) -> TriggerEvent:
        self._fired.append((time.monotonic(), execution.execution_id))
        return self._event(execution)

    async def _confirm(self, *, all_fired: bool = False) -> None:
        """Store the ids fired ``confirm_seconds`` ago (or all of them)."""
        cutoff = time.monotonic() - (0 if all_fired else self.confirm_seconds)
        done = [execution_id for at, execution_id in self._fired if at <= cutoff]
        if not done:
            return
        self._fired = [(at, e) for at, e in self._fired if at > cutoff]
        self._seen = [*self._seen, *done][-self.keep :]
        if self.asset_state_store is not None:
            await self.asset_state_store.aset(SEEN_KEY, list(self._seen))

    def _new(self, executions: Iterable[Execution]) -> list[Execution]:
        seen = {*self._seen, *(e for _, e in self._fired)}
        return [
            e
            for e in executions
            if e.execution_id not in seen and (self.account_id is None or e.account_id == self.account_id)
        ]

    @classmethod
    def topic(cls, kwargs: dict[str, Any]) -> str:
        return "str+{}"

    @classmethod
    async def poll_once(cls, client: IbkrClient, kwargs: dict[str, Any]) -> StreamMessage:
        from ibkr_provider.client.models.stream import Trades

        return Trades(tuple(await asyncio.to_thread(client.iserver.executions, 7)))

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        from ibkr_provider.client.models.stream import Trades

        await self._load_seen()
        for execution in self._new(await self._catch_up()):
            yield self._fire(execution)
        async for message in shared_stream:
            await self._confirm()
            if isinstance(message, Trades):
                for execution in self._new(message.executions):
                    yield self._fire(execution)

    async def _catch_up(self) -> list[Execution]:
        """IBKR's fills of the last 7 days, read once by REST when the watcher starts: the
        replay IBKR sends on subscribe reaches only the stream's first watcher, so a sibling
        joining later (or after a triggerer restart) reads it itself."""
        from ibkr_provider.triggers.streams import trigger_client

        try:
            client = await trigger_client(self.ibkr_conn_id)
            try:
                return await asyncio.to_thread(client.iserver.executions, 7, self.account_id)
            finally:
                await asyncio.to_thread(client.close)
        except IbkrError as exc:
            self.log.warning("could not read IBKR's recent fills (the stream's replay stands in): %s", exc)
            return []

    def _event(self, execution: Execution) -> TriggerEvent:
        self.log.info(
            "new IBKR fill %s: %s %s %s at %s",
            execution.execution_id,
            execution.side,
            execution.size,
            execution.symbol,
            execution.price,
        )
        return TriggerEvent(execution.summary())
