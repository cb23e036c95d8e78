"""The base of the provider's websocket watchers: one shared stream per topic, through Airflow 3.3's
shared event streams.

Invariant: sibling watchers of one connection that follow the same topic (every fill watcher of
``ibkr_default``, say, one per account) share one stream in the triggerer. Each watcher returns
the same :meth:`~IbkrStreamWatcher.shared_stream_key` (its class, connection, stream options and
topic), so the triggerer opens :meth:`~IbkrStreamWatcher.open_shared_stream` once for the group
and fans its messages out; each watcher's :meth:`~IbkrStreamWatcher.filter_shared_stream` keeps
its own cursor (asset state store) and fires its own events. Underneath, every stream of a
session is a listener on the session's one socket (:mod:`ibkr_provider.client.stream.hub`), so
watchers of different topics and deferred order waits share the socket too.

The shared stream yields typed messages (:mod:`ibkr_provider.client.models.stream`) whichever
their source: from the socket while IBKR streams; from REST polls, built into the same message
types, once IBKR refuses the socket (said once in the triggerer's log); and :data:`IDLE` when
nothing came for a quarter second, so a filter can do timed work (store a cursor a few seconds after an
event). A watcher's :meth:`run` (tests, a triggerer without shared streams) is the same filter
over a stream of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Hashable
from typing import TYPE_CHECKING, Any, ClassVar, Final

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient
    from ibkr_provider.client.models.stream import StreamMessage

log = logging.getLogger(__name__)


class Idle:
    """Nothing came for :attr:`IbkrStreamWatcher.idle_seconds`."""

    def __repr__(self) -> str:
        return "IDLE"


IDLE: Final = Idle()


class IbkrStreamWatcher(BaseEventTrigger):
    """A ``BaseEventTrigger`` fed by one IBKR websocket topic (REST polls when it is refused).

    A subclass names its topic (:meth:`topic`), the REST read that stands in for it
    (:meth:`poll_once`), the kwargs that shape the stream (:attr:`stream_fields`; siblings with
    equal values share one stream) and its filter (:meth:`filter_shared_stream`).
    """

    #: The kwargs that shape the shared stream: siblings equal in these share one.
    stream_fields: ClassVar[tuple[str, ...]] = ("ibkr_conn_id", "stream_auth", "poll_interval")
    #: How long a quiet stream waits before it yields :data:`IDLE`.
    idle_seconds: ClassVar[float] = 0.25

    def serialize(self) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def shared_stream_key(self) -> Hashable:
        _, kwargs = self.serialize()
        return (type(self).__qualname__, *((name, repr(kwargs[name])) for name in self.stream_fields))

    @classmethod
    def topic(cls, kwargs: dict[str, Any]) -> str:
        """The subscription, e.g. ``str+{}``."""
        raise NotImplementedError

    @classmethod
    def resubscribe_every(cls, kwargs: dict[str, Any]) -> float | None:
        """How often the subscription is sent again (None: never)."""
        return None

    @classmethod
    async def poll_once(cls, client: IbkrClient, kwargs: dict[str, Any]) -> StreamMessage:
        """The REST read that stands in for the topic, as the topic's message type."""
        raise NotImplementedError

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        from ibkr_provider.client.stream.hub import StreamState
        from ibkr_provider.triggers.streams import session_hub, trigger_client

        topic = cls.topic(kwargs)
        every = cls.resubscribe_every(kwargs)
        client = await trigger_client(kwargs["ibkr_conn_id"])
        try:
            hub = session_hub(client, kwargs["ibkr_conn_id"], kwargs["stream_auth"])
            async with hub.listen(topic) as listener:
                resubscribe_at = time.monotonic() + every if every else None
                while True:
                    wait = cls.idle_seconds
                    if resubscribe_at is not None:
                        wait = max(min(wait, resubscribe_at - time.monotonic()), 0.01)
                    try:
                        message = await asyncio.wait_for(listener.next(), timeout=wait)
                    except TimeoutError:
                        if resubscribe_at is not None and time.monotonic() >= resubscribe_at:
                            await hub.resend(topic)
                            resubscribe_at = time.monotonic() + (every or 0)
                        yield IDLE
                        continue
                    if isinstance(message, StreamState) and message.kind == "unavailable":
                        log.warning(
                            "IBKR's websocket is unavailable (%s): polling for %s every %g s instead",
                            message.reason,
                            topic,
                            kwargs["poll_interval"],
                        )
                        break
                    yield message
            while True:
                yield await cls.poll_once(client, kwargs)
                deadline = time.monotonic() + kwargs["poll_interval"]
                while (left := deadline - time.monotonic()) > 0:
                    await asyncio.sleep(min(left, cls.idle_seconds))
                    yield IDLE
        finally:
            await asyncio.to_thread(client.close)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        raise NotImplementedError
        yield  # pragma: no cover - an async iterator for mypy

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """The filter over a stream of this watcher's own (outside a shared-stream group)."""
        _, kwargs = self.serialize()
        stream = type(self).open_shared_stream(kwargs)
        try:
            async for event in self.filter_shared_stream(stream):
                yield event
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
