"""Keep-alive: tickle the shared session when every process has left it idle.

IBKR: "If the gateway has not received any requests for several minutes an open session will
automatically timeout ... It is expected to call this endpoint approximately every 60 seconds"
(``POST /tickle``). One daemon thread per session key per process does it, however many clients
of that session the process holds (an operator's hook, a sensor's pokes, a notebook): each client
registers a tickle function and releases it on ``close()``; the thread stops with the last one.

Keep-alive never logs in: it tickles only a live session, and when the tickle finds the session
dead it stops, leaving recovery to the next real request (which registers again). A keep-alive
that logged in by itself would take the brokerage session from whoever holds it now.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ibkr_provider.client.errors import IbkrError, IbkrErrorCode, IbkrSessionError

log = logging.getLogger(__name__)

#: Tickles the session if it is idle; returns whether it did. Raises IbkrSessionError if dead.
Tickler = Callable[[], bool]

THREAD_NAME = "ibkr-keepalive"
#: How long closing a client waits for its keep-alive thread to end (it is woken at once; only a
#: tickle already on the wire can hold it).
STOP_JOIN_SECONDS = 2.0


class _KeepAliveThread(threading.Thread):
    def __init__(self, key: str, period: float) -> None:
        super().__init__(name=THREAD_NAME, daemon=True)
        self.key = key
        self.period = period
        self.ticklers: dict[int, Tickler] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.period):
            with _registry_lock:
                tickle = next(iter(self.ticklers.values()), None)
            if tickle is None:
                return
            try:
                tickle()
            except IbkrSessionError as exc:
                log.info("IBKR keep-alive stopped: %s", exc)
                _retire(self)
                return
            except IbkrError as exc:
                if exc.code is IbkrErrorCode.CLIENT_CLOSED:  # its client closed mid-tickle: the next
                    continue  # owner's tickle serves at the next period (or the thread stops)
                log.warning("IBKR keep-alive tickle failed: %s", exc)


_registry: dict[str, _KeepAliveThread] = {}
_registry_lock = threading.Lock()


def _retire(thread: _KeepAliveThread) -> None:
    with _registry_lock:
        if _registry.get(thread.key) is thread:
            del _registry[thread.key]
        thread.stopped.set()


def register(key: str, owner: object, tickle: Tickler, *, interval: float) -> None:
    """Keep session ``key`` alive on behalf of ``owner`` (a client); starts the session's one
    thread in this process if none runs."""
    with _registry_lock:
        thread = _registry.get(key)
        if thread is None or thread.stopped.is_set():
            thread = _KeepAliveThread(key, period=max(1.0, interval / 4))
            _registry[key] = thread
            thread.ticklers[id(owner)] = tickle
            thread.start()
        else:
            thread.ticklers[id(owner)] = tickle


def release(key: str, owner: object) -> None:
    """``owner`` no longer needs session ``key`` kept alive; the thread stops with the last owner,
    and is waited for (briefly), so a closed client leaves no thread behind."""
    with _registry_lock:
        thread = _registry.get(key)
        if thread is None:
            return
        thread.ticklers.pop(id(owner), None)
        if thread.ticklers:
            return
        del _registry[key]
        thread.stopped.set()
    if thread is not threading.current_thread():
        thread.join(timeout=STOP_JOIN_SECONDS)  # a tickle in flight ends within its HTTP timeout


def is_running(key: str, owner: object) -> bool:
    """Whether session ``key`` is being kept alive on behalf of ``owner``."""
    with _registry_lock:
        thread = _registry.get(key)
        return thread is not None and not thread.stopped.is_set() and id(owner) in thread.ticklers
