"""``IbkrFillEventTrigger`` against the sandbox's websocket: one event per new fill, none for
the fills IBKR replays on subscribe once their ids are in the asset state store, also across a
restart (a new trigger instance with the same store), and polling when IBKR refuses the socket
(issue 23)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrClient
from ibkr_provider.client.models.orders import OrderTicket
from tests.support.state_store import FakeStateStore

MakeClient = Callable[..., IbkrClient]
VTI = 12340038


@pytest.fixture
def connection(
    monkeypatch: pytest.MonkeyPatch, fresh_sandbox: RunningSandbox, tmp_path: Any
) -> RunningSandbox:
    """``ibkr_default`` on the sandbox, sharing its session with the test's own client."""
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", fresh_sandbox.connection_json())
    monkeypatch.setenv("AIRFLOW__IBKR__SESSION_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "")
    return fresh_sandbox


def _client(sandbox: RunningSandbox, make_client: MakeClient, tmp_path: Any) -> IbkrClient:
    return make_client(sandbox, session_cache=f"file://{tmp_path / 'cache'}")


def _fill(client: IbkrClient, tag: str, account: str = "DU2345678") -> str:
    """A market order, filled at once; returns its cOID."""
    coid = f"{tag}-{time.time_ns()}"
    client.request(
        "POST",
        f"/iserver/account/{account}/orders",
        json={"orders": [OrderTicket(conid=VTI, side="BUY", quantity=1, coid=coid).to_json(account)]},
    )
    return coid


async def _collect(events: AsyncIterator[Any], n: int, seconds: float = 15) -> list[dict[str, Any]]:
    """The first ``n`` events, then the generator is asked for the next one for a moment, as the
    triggerer does at once (the trigger stores the ids it fired ``confirm_seconds`` later)."""
    got: list[dict[str, Any]] = []

    async def take() -> None:
        async for event in events:
            got.append(dict(event.payload))
            if len(got) == n:
                return

    await asyncio.wait_for(take(), timeout=seconds)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(events.__anext__(), timeout=0.5)
    return got


def test_one_event_per_new_fill_and_none_for_the_replay_after_a_restart(
    connection: RunningSandbox, make_client: MakeClient, tmp_path: Any
) -> None:
    from ibkr_provider.triggers.fills import SEEN_KEY, IbkrFillEventTrigger

    client = _client(connection, make_client, tmp_path)
    store = FakeStateStore()

    async def first_run() -> list[dict[str, Any]]:
        trigger = IbkrFillEventTrigger(
            ibkr_conn_id="ibkr_default", account_id="DU2345678", confirm_seconds=0.1
        )
        trigger.asset_state_store = store  # type: ignore[assignment]
        events = trigger.run()
        collecting = asyncio.ensure_future(_collect(events, 3))
        await asyncio.sleep(1.0)  # subscribed
        for i in range(3):  # a burst of fills
            await asyncio.to_thread(_fill, client, f"burst{i}")
        got = await collecting
        await events.aclose()  # the triggerer stops (restart)
        return got

    burst = asyncio.run(first_run())
    assert len({e["execution_id"] for e in burst}) == 3 and all(e["coid"].startswith("burst") for e in burst)
    assert len(store.values[SEEN_KEY]) == 3

    async def after_restart() -> list[dict[str, Any]]:
        trigger = IbkrFillEventTrigger(ibkr_conn_id="ibkr_default", confirm_seconds=0.1)
        trigger.asset_state_store = store  # type: ignore[assignment]
        events = trigger.run()
        collecting = asyncio.ensure_future(_collect(events, 1))
        await asyncio.sleep(1.0)  # IBKR replayed the three: nothing fired for them
        assert not collecting.done()
        await asyncio.to_thread(_fill, client, "after")
        got = await collecting
        await events.aclose()
        return got

    (late,) = asyncio.run(after_restart())
    assert late["coid"].startswith("after") and late["commission"] == "1.00" and late["side"] == "BUY"
    assert len(store.values[SEEN_KEY]) == 4


def test_a_refused_socket_polls_ibkrs_trades(
    connection: RunningSandbox, make_client: MakeClient, tmp_path: Any
) -> None:
    from ibkr_provider.triggers.fills import IbkrFillEventTrigger

    client = _client(connection, make_client, tmp_path)
    connection.configure(ws_refuse=True, endpoint_limits=False)
    trigger = IbkrFillEventTrigger(ibkr_conn_id="ibkr_default", poll_interval=0.5)

    async def scenario() -> list[dict[str, Any]]:
        events = trigger.run()
        collecting = asyncio.ensure_future(_collect(events, 1))
        await asyncio.to_thread(_fill, client, "polled")
        got = await collecting
        await events.aclose()
        return got

    (event,) = asyncio.run(scenario())
    assert event["coid"].startswith("polled")
    assert connection.stats()["paths"]["GET /v1/api/iserver/account/trades"] >= 1


def test_the_trigger_serialises_without_secrets() -> None:
    from ibkr_provider.triggers.fills import IbkrFillEventTrigger

    path, kwargs = IbkrFillEventTrigger(ibkr_conn_id="ibkr_x", account_id="DU1").serialize()
    assert path == "ibkr_provider.triggers.fills.IbkrFillEventTrigger"
    assert kwargs == {
        "ibkr_conn_id": "ibkr_x",
        "account_id": "DU1",
        "poll_interval": 30.0,
        "stream_auth": "auto",
        "keep": 5000,
        "confirm_seconds": 5.0,
    }
    assert IbkrFillEventTrigger(**kwargs).serialize() == (path, kwargs)


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        (
            "ibkr_provider.triggers.account_values.IbkrAccountValueEventTrigger",
            {"level": "-5000", "metric": "net_liquidation", "direction": "below", "account_id": "DU1"},
        ),
        ("ibkr_provider.triggers.prices.IbkrPriceCrossingEventTrigger", {"conid": VTI, "level": "300"}),
        ("ibkr_provider.triggers.flex.IbkrFlexReportEventTrigger", {"query_id": "100001"}),
    ],
)
def test_every_event_trigger_round_trips_its_kwargs_and_names_a_connection_not_a_secret(
    path: str, kwargs: dict[str, Any]
) -> None:
    import importlib

    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    serialised_path, serialised = cls(**kwargs).serialize()
    assert serialised_path == path and serialised.items() >= kwargs.items()
    assert cls(**serialised).serialize() == (path, serialised)
    assert any(key.endswith("conn_id") for key in serialised)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"level": "-5000", "metric": "pnl"}, "metric: 'pnl' is not one of daily_pnl"),
        ({"level": "five", "metric": "daily_pnl"}, "level: 'five' is not a number"),
        ({"level": "-5000", "direction": "down"}, "direction: 'down' is not 'above' or 'below'"),
    ],
)
def test_a_bad_account_value_watcher_names_the_field(kwargs: dict[str, Any], named: str) -> None:
    from ibkr_provider.triggers.account_values import IbkrAccountValueEventTrigger

    with pytest.raises(ValueError, match=named):
        IbkrAccountValueEventTrigger(**kwargs)


def test_a_price_crossing_fires_once_and_again_only_after_it_moved_back(
    connection: RunningSandbox, make_client: MakeClient, tmp_path: Any
) -> None:
    """Above 300 for VTI (at 289): no event for the start, one when it crosses, none while it
    stays above, none for moving back, one for the next crossing; a restart above the level
    (armed state in the store) fires nothing."""
    from ibkr_provider.triggers.prices import IbkrPriceCrossingEventTrigger

    _client(connection, make_client, tmp_path).connect()  # the session the triggers share
    store = FakeStateStore()

    def trigger() -> IbkrPriceCrossingEventTrigger:
        made = IbkrPriceCrossingEventTrigger(conid=VTI, level="300", direction="above")
        made.asset_state_store = store  # type: ignore[assignment]
        return made

    async def scenario() -> list[dict[str, Any]]:
        events = trigger().run()
        got: list[dict[str, Any]] = []

        async def take() -> None:
            async for event in events:
                got.append(dict(event.payload))

        taking = asyncio.ensure_future(take())
        for price in (289, 301, 305, 302, 295, 299, 300.5):  # crosses at 301 and again at 300.5
            await asyncio.sleep(0.4)
            await asyncio.to_thread(connection.set_price, VTI, price)
        await asyncio.sleep(0.6)
        taking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await taking
        return got

    crossings = asyncio.run(scenario())
    assert [c["price"] for c in crossings] == ["301.00", "300.50"], crossings
    assert store.values["armed:12340038:above:300"] is False

    async def restarted_above() -> bool:
        events = trigger().run()
        first = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(1.0)
        await asyncio.to_thread(connection.set_price, VTI, 310)  # still above: no new crossing
        await asyncio.sleep(0.6)
        fired = first.done()
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await first
        return fired

    assert asyncio.run(restarted_above()) is False


def _account_value_trigger(store: FakeStateStore, **kwargs: Any) -> Any:
    from ibkr_provider.triggers.account_values import IbkrAccountValueEventTrigger

    made = IbkrAccountValueEventTrigger(
        metric="daily_pnl", level="-3000", direction="below", account_id="DU2345678", **kwargs
    )
    made.asset_state_store = store  # type: ignore[assignment]
    return made


async def _events_while_prices_move(
    trigger: Any, sandbox: RunningSandbox, prices: list[float], pause: float
) -> list[dict[str, Any]]:
    """The events ``trigger`` fires while VTI moves through ``prices``, ``pause`` s apart."""
    events = trigger.run()
    got: list[dict[str, Any]] = []

    async def take() -> None:
        async for event in events:
            got.append(dict(event.payload))

    taking = asyncio.ensure_future(take())
    for _ in range(150):  # the watcher's first figures armed it
        if trigger.asset_state_store.values:
            break
        await asyncio.sleep(0.1)
    for price in prices:
        await asyncio.sleep(pause)
        await asyncio.to_thread(sandbox.set_price, VTI, price)
    await asyncio.sleep(pause)
    taking.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await taking
    return got


def test_a_daily_loss_beyond_the_level_fires_once_per_crossing_from_ibkrs_pnl_stream(
    connection: RunningSandbox, make_client: MakeClient, tmp_path: Any
) -> None:
    """DU2345678 holds 358 VTI (prior close 286.14, daily PnL +2,145 at 289): at 270 the day's
    loss passes 3,000 (one event), at 265 it stays beyond (none), back at 289 it re-arms, at 268
    it crosses again (one event). The payload carries the account's figures."""
    _client(connection, make_client, tmp_path).connect()
    store = FakeStateStore()
    crossings = asyncio.run(
        _events_while_prices_move(_account_value_trigger(store), connection, [270, 265, 289, 268], 0.4)
    )
    assert [c["value"] for c in crossings] == ["-4656.54", "-5372.54"], crossings
    first = crossings[0]
    assert first["account_id"] == "DU2345678" and first["metric"] == "daily_pnl"
    assert first["daily_pnl"] == first["value"] and first["net_liquidation"] == "249914.6"
    assert store.values["armed:DU2345678:daily_pnl:below:-3000"] is False
    assert connection.stats()["paths"].get("GET /v1/api/iserver/account/pnl/partitioned", 0) == 0


def test_a_refused_socket_polls_ibkrs_pnl_and_a_crossing_during_a_restart_fires_after_it(
    connection: RunningSandbox, make_client: MakeClient, tmp_path: Any
) -> None:
    """Polling: the first read arms (stored); the triggerer stops; the loss passes the level
    while it is down; the restarted watcher's first read fires it, as the stored state says the
    level was not beyond before (without the store a first read beyond the level only arms)."""
    _client(connection, make_client, tmp_path).connect()
    connection.configure(ws_refuse=True, endpoint_limits=False)
    store = FakeStateStore()
    key = "armed:DU2345678:daily_pnl:below:-3000"

    async def first_read() -> list[Any]:
        events = _account_value_trigger(store).run()
        first = asyncio.ensure_future(events.__anext__())
        for _ in range(150):
            if key in store.values or first.done():
                break
            await asyncio.sleep(0.1)
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await first
        await events.aclose()
        return [first.result()] if first.done() and not first.cancelled() else []

    assert asyncio.run(first_read()) == []
    assert store.values[key] is True
    connection.set_price(VTI, 270)

    async def restarted() -> dict[str, Any]:
        events = _account_value_trigger(store).run()
        try:  # IBKR's pace: the second PnL read of the session comes 5 s after the first
            return dict((await asyncio.wait_for(events.__anext__(), timeout=15)).payload)
        finally:
            await events.aclose()

    assert asyncio.run(restarted())["value"] == "-4656.54"
    assert connection.stats()["paths"]["GET /v1/api/iserver/account/pnl/partitioned"] == 2


def test_sibling_fill_watchers_share_one_stream_in_airflows_shared_stream_manager(
    connection: RunningSandbox, make_client: MakeClient, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two fill watchers (one per account) subscribed as the triggerer does, through Airflow
    3.3's ``SharedStreamManager``: one stream opened, one socket, and each watcher fires its own
    account's fill only."""
    from airflow.triggers.shared_stream import SharedStreamManager

    from ibkr_provider.triggers.fills import IbkrFillEventTrigger

    client = _client(connection, make_client, tmp_path)
    opened: list[dict[str, Any]] = []
    original = IbkrFillEventTrigger.open_shared_stream.__func__  # type: ignore[attr-defined]

    async def counted(cls: type, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        opened.append(kwargs)
        async for message in original(cls, kwargs):
            yield message

    monkeypatch.setattr(IbkrFillEventTrigger, "open_shared_stream", classmethod(counted))
    watchers = {
        account: IbkrFillEventTrigger(account_id=account, confirm_seconds=0.1)
        for account in ("DU2345678", "U3456789")
    }

    async def scenario() -> dict[str, list[dict[str, Any]]]:
        manager = SharedStreamManager()
        streams = {}
        for trigger_id, (account, watcher) in enumerate(watchers.items()):
            watcher.asset_state_store = FakeStateStore()  # type: ignore[assignment]
            key = watcher.shared_stream_key()
            streams[account] = watcher.filter_shared_stream(
                manager.subscribe(trigger_id=trigger_id, trigger=watcher, key=key)
            )
        collecting = {
            account: asyncio.ensure_future(_collect(events, 1)) for account, events in streams.items()
        }
        await asyncio.sleep(1.0)
        await asyncio.to_thread(_fill, client, "first", "DU2345678")
        await asyncio.to_thread(_fill, client, "second", "U3456789")
        got = {account: await future for account, future in collecting.items()}
        await manager.stop_all()
        return got

    got = asyncio.run(scenario())
    assert [e["account_id"] for e in got["DU2345678"]] == ["DU2345678"]
    assert got["DU2345678"][0]["coid"].startswith("first")
    assert [e["coid"][:6] for e in got["U3456789"]] == ["second"]
    assert len(opened) == 1, opened
    assert connection.stats()["ws_connections"] == 1
