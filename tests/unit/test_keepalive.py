"""One keep-alive thread per session key per process, kept while any client needs it."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from ibkr_provider.client.errors import IbkrError, IbkrErrorCode
from ibkr_provider.client.session import keepalive


def _threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == keepalive.THREAD_NAME and t.is_alive()]


def _gone_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not _threads()


def test_two_clients_of_one_session_share_one_thread_until_both_close() -> None:
    first, second = object(), object()
    calls: list[str] = []
    keepalive.register("key-a", first, lambda: calls.append("a") is None, interval=4)
    keepalive.register("key-a", second, lambda: calls.append("b") is None, interval=4)
    assert len(_threads()) == 1
    assert keepalive.is_running("key-a", first) and keepalive.is_running("key-a", second)
    keepalive.release("key-a", first)
    assert len(_threads()) == 1 and not keepalive.is_running("key-a", first)
    keepalive.release("key-a", second)
    assert _gone_within(1.0)  # stops at once, without waiting out its period
    keepalive.release("key-a", second)  # releasing twice is harmless


def test_the_thread_tickles_and_stops_when_the_session_is_dead() -> None:
    from ibkr_provider.client.errors import IbkrSessionError

    owner = object()
    ticks: list[float] = []

    def tickle() -> bool:
        ticks.append(time.monotonic())
        if len(ticks) == 2:
            raise IbkrSessionError("not authenticated", status=401)
        return True

    keepalive.register("key-b", owner, tickle, interval=4)  # a tick every second
    assert _gone_within(3.5)
    assert len(ticks) == 2 and not keepalive.is_running("key-b", owner)


def test_a_tickle_whose_client_closed_under_it_is_no_failure(caplog: pytest.LogCaptureFixture) -> None:
    """A client closed while the thread tickles through it ends that tickle with ``client_closed``
    (nothing sent): no warning, and the next owner's tickle keeps the session alive."""
    first, second = object(), object()
    ticks: list[str] = []

    def closed_under_the_tickle() -> bool:
        keepalive.release("key-c", first)  # close() releases first, then wakes the pacer
        raise IbkrError("the client was closed", code=IbkrErrorCode.CLIENT_CLOSED)

    keepalive.register("key-c", first, closed_under_the_tickle, interval=4)
    keepalive.register("key-c", second, lambda: ticks.append("second") is None, interval=4)
    deadline = time.monotonic() + 3.5
    while not ticks and time.monotonic() < deadline:
        time.sleep(0.05)
    keepalive.release("key-c", second)
    assert ticks and _gone_within(1.0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
