"""One websocket per IBKR session per process, shared by everyone who listens.

Invariant: at most one socket per (event loop, session key). Fifty triggers waiting on fifty
orders in one triggerer are fifty listeners on one socket. A topic (``sor+{}``) is subscribed
once, when its first listener arrives, and again after every reconnect.

Life cycle, told to every listener as :class:`StreamState` events:
- ``connected`` (``reconnected`` after a drop: whatever happened while the socket was down was
  not streamed, so a listener reads it once by REST);
- a drop (closed, reset, a malformed frame, or silence longer than ``silence_seconds``: no
  heartbeat either) reconnects at once, then with exponential backoff and jitter (tenacity)
  for up to ``max_reconnects`` attempts;
- ``unavailable`` ends it: the attempts ran out, or IBKR refused the login (close code 1008, or
  no ``authenticated`` status), which a reconnect cannot fix. Listeners then poll by REST.
The socket sends ``tic`` every ``tic_seconds`` (IBKR: about once a minute) and closes when the
last listener leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from ibkr_provider.client.errors import IbkrAuthError, IbkrError, IbkrResponseError
from ibkr_provider.client.http.transport import USER_AGENT
from ibkr_provider.client.models.stream import Notice, StreamMessage, parse_message
from ibkr_provider.client.stream.login import StreamLogin

log = logging.getLogger(__name__)

#: Close codes after which reconnecting cannot help (policy violation: IBKR refused the login).
PERMANENT_CLOSE_CODES = frozenset({1008})


@dataclass(frozen=True)
class StreamState:
    """``connected`` (``reconnected`` when it follows a drop) or ``unavailable`` (``reason``)."""

    kind: str
    reconnected: bool = False
    reason: str = ""


class _Dropped(Exception):
    """The socket was up and went down: reconnect at once (the attempt count starts again)."""


class _Transient(Exception):
    """Opening the socket failed in a way a later attempt may not."""


@dataclass(frozen=True)
class StreamOptions:
    """The hub's bounds (seconds). IBKR's heartbeat interval is UNCONFIRMED: ``silence_seconds``
    is how long a socket may stay quiet, heartbeats included, before it counts as dropped."""

    tic_seconds: float = 60.0
    silence_seconds: float = 45.0
    max_reconnects: int = 6
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    open_timeout: float = 10.0
    close_timeout: float = 2.0
    verify: bool | str = True


class Listener:
    """What one consumer receives: every message of the socket and its state changes."""

    def __init__(self, hub: StreamHub, topics: tuple[str, ...]) -> None:
        self.hub = hub
        self.topics = topics
        self.queue: asyncio.Queue[StreamMessage | StreamState] = asyncio.Queue()

    async def next(self) -> StreamMessage | StreamState:
        return await self.queue.get()


class StreamHub:
    """The shared socket of one session in one event loop (see the module docstring)."""

    def __init__(
        self, login: Callable[[], Awaitable[StreamLogin]], options: StreamOptions | None = None
    ) -> None:
        self._login = login
        self.options = options or StreamOptions()
        self._listeners: list[Listener] = []
        self._topics: dict[str, int] = {}
        self._socket: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self.connections = 0

    @contextlib.asynccontextmanager
    async def listen(self, *topics: str) -> AsyncIterator[Listener]:
        """Listen to the socket (opened if needed) with ``topics`` subscribed, e.g. ``"sor+{}"``."""
        listener = Listener(self, topics)
        self._listeners.append(listener)
        for topic in topics:
            self._topics[topic] = self._topics.get(topic, 0) + 1
            if self._topics[topic] == 1 and self._socket is not None:
                await self._send(topic)
        if self._socket is not None:  # joining a socket already up: this listener's "connected"
            listener.queue.put_nowait(StreamState("connected"))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        try:
            yield listener
        finally:
            self._listeners.remove(listener)
            for topic in topics:
                self._topics[topic] -= 1
                if self._topics[topic] == 0:
                    del self._topics[topic]
            if not self._listeners and self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
                self._task = None

    async def resend(self, topic: str) -> None:
        """Send a subscription again (IBKR ends ``smd`` subscriptions after 10 minutes)."""
        await self._send(topic)

    def _tell(self, event: StreamMessage | StreamState) -> None:
        for listener in list(self._listeners):
            listener.queue.put_nowait(event)

    async def _send(self, text: str) -> None:
        if self._socket is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._socket.send(text)

    async def _run(self) -> None:
        reconnected = False
        while self._listeners:
            try:
                socket = await self._open_with_retries()
            except _Transient as exc:
                reason = f"{exc} (after {self.options.max_reconnects} attempts)"
                self._tell(StreamState("unavailable", reason=reason))
                return
            except IbkrError as exc:  # refused login, or no session to log in with
                self._tell(StreamState("unavailable", reason=f"{type(exc).__name__}: {exc}"))
                return
            try:
                async with socket:
                    await self._serve(socket, reconnected=reconnected)
            except _Dropped as dropped:
                log.warning("IBKR websocket dropped (%s); reconnecting", dropped)
                reconnected = True
            except IbkrAuthError as exc:
                self._tell(StreamState("unavailable", reason=str(exc)))
                return

    async def _open_with_retries(self) -> ClientConnection:
        """An authenticated socket; failures that a later attempt may not meet are retried with
        exponential backoff and jitter, up to ``max_reconnects`` attempts."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(self.options.max_reconnects),
            wait=wait_exponential_jitter(
                multiplier=self.options.backoff_initial,
                max=self.options.backoff_max,
                jitter=self.options.backoff_initial,
            ),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._open()
        raise _Transient("no attempt was made")  # unreachable: reraise=True raises the last error

    async def _serve(self, socket: ClientConnection, *, reconnected: bool) -> None:
        """Subscribe, say so, then read until the socket drops."""
        self._socket = socket
        self.connections += 1
        try:
            for topic in list(self._topics):
                await socket.send(topic)
            self._tell(StreamState("connected", reconnected=reconnected))
            await self._read(socket)
        finally:
            self._socket = None

    def _ssl(self, url: str) -> ssl.SSLContext | None:
        if not url.startswith("wss:"):
            return None
        verify = self.options.verify
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        if verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _open(self) -> ClientConnection:
        """Open the socket and wait for IBKR's authenticated status."""
        login = await self._login()
        headers = {"Cookie": login.cookie} if login.cookie else {}
        try:
            socket = await connect(
                login.url,
                additional_headers=headers,
                user_agent_header=USER_AGENT,
                ssl=self._ssl(login.url),
                open_timeout=self.options.open_timeout,
                close_timeout=self.options.close_timeout,
                ping_interval=None,  # IBKR's own keep-alive is "tic"
            )
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise _Transient(f"cannot open the IBKR websocket: {type(exc).__name__}: {exc}") from None
        try:
            await self._authenticate(socket, login)
        except BaseException:
            await socket.close()
            raise
        return socket

    async def _authenticate(self, socket: ClientConnection, login: StreamLogin) -> None:
        """Wait for IBKR's ``authenticated``; answer ``waiting for session`` with the session."""

        async def until_authenticated() -> None:
            while True:
                message = parse_message(await socket.recv())
                if isinstance(message, Notice):
                    if message.payload.get("message") == "waiting for session" and login.session:
                        await socket.send(f'{{"session":"{login.session}"}}')
                    elif message.authenticated is not None:
                        if not message.authenticated:
                            raise IbkrAuthError("IBKR's websocket says the session is not authenticated")
                        return

        try:
            await asyncio.wait_for(until_authenticated(), timeout=self.options.open_timeout)
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code in PERMANENT_CLOSE_CODES:
                raise IbkrAuthError(
                    f"IBKR closed the websocket at login: {exc.rcvd.code} {exc.rcvd.reason}"
                ) from None
            raise _Transient(f"the IBKR websocket closed during login: {exc}") from None
        except (TimeoutError, IbkrResponseError) as exc:
            raise _Transient(f"no authenticated status from the IBKR websocket: {exc}") from None

    async def _read(self, socket: ClientConnection) -> None:
        """Hand every message to the listeners; send ``tic`` on time; a quiet socket is dropped.
        One receive task at a time, cancelled and awaited on the way out (a cancelled hub must
        not leave a receive pending on a socket it closes)."""
        loop = asyncio.get_running_loop()
        last_received = loop.time()
        next_tic = last_received + self.options.tic_seconds
        receiving: asyncio.Task[str | bytes] = asyncio.ensure_future(socket.recv())
        try:
            while True:
                silent_after = last_received + self.options.silence_seconds
                await asyncio.wait({receiving}, timeout=max(min(silent_after, next_tic) - loop.time(), 0.01))
                if not receiving.done():
                    if loop.time() >= silent_after:
                        raise _Dropped(f"nothing received for {self.options.silence_seconds:g} s")
                    if loop.time() >= next_tic:
                        await socket.send("tic")
                        next_tic = loop.time() + self.options.tic_seconds
                    continue
                try:
                    text = receiving.result()
                except ConnectionClosed as exc:
                    if exc.rcvd is not None and exc.rcvd.code in PERMANENT_CLOSE_CODES:
                        raise IbkrAuthError(
                            f"IBKR closed the websocket: {exc.rcvd.code} {exc.rcvd.reason}"
                        ) from None
                    raise _Dropped(str(exc) or "connection closed") from None
                receiving = asyncio.ensure_future(socket.recv())
                last_received = loop.time()
                try:
                    message = parse_message(text)
                except IbkrResponseError as exc:
                    raise _Dropped(str(exc)) from None
                self._tell(message)
        finally:
            receiving.cancel()
            with contextlib.suppress(BaseException):
                await receiving
