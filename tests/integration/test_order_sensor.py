"""The order-status sensor in poke and deferrable modes, its trigger, and a real Airflow run."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrClient, IbkrClientConfig
from ibkr_provider.client.models.orders import OrderTicket

VTI = 12340038


@pytest.fixture
def resting_order(
    monkeypatch: pytest.MonkeyPatch, fresh_sandbox: RunningSandbox, isolated_session_cache: Path
) -> str:
    """A paper BUY limit order below the market (289.00): it rests until the price drops."""
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", fresh_sandbox.connection_json())
    client = IbkrClient(
        IbkrClientConfig.from_mapping(
            fresh_sandbox.client_config_values(session_cache_dir=str(isolated_session_cache))
        )
    )
    placed = client.orders.place(
        "DU2345678",
        OrderTicket(conid=VTI, side="BUY", quantity=1, order_type="LMT", limit_price=280.0, coid="rest"),
    )
    client.close()
    assert placed.status == "Submitted"
    return placed.order_id


def test_trigger_round_trips_through_serialize() -> None:
    from ibkr_provider.triggers.order_status import IbkrOrderStatusTrigger

    trigger = IbkrOrderStatusTrigger(order_id="42", ibkr_conn_id="ibkr_x", poll_interval=5, deadline=123.0)
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert json.loads(json.dumps(kwargs)) == kwargs  # stored JSON-serialized in the trigger table


def test_poke_mode_waits_then_succeeds_on_fill(resting_order: str, fresh_sandbox: RunningSandbox) -> None:
    from ibkr_provider.sensors.order_status import IbkrOrderStatusSensor

    sensor = IbkrOrderStatusSensor(task_id="wait", order_id=resting_order, poke_interval=1)
    assert sensor.poke({}).is_done is False  # type: ignore[arg-type]
    fresh_sandbox.set_price(VTI, 279.0)
    done = sensor.poke({})  # type: ignore[arg-type]
    assert done.is_done and done.xcom_value == {
        "order_id": resting_order,
        "order_status": "Filled",
        "filled": 1.0,
    }
    sensor.hook.close()  # execute() closes it; this test called poke() directly


def test_deferrable_sensor_defers_and_the_trigger_completes_on_fill(
    resting_order: str, fresh_sandbox: RunningSandbox
) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    from ibkr_provider.sensors.order_status import IbkrOrderStatusSensor
    from ibkr_provider.triggers.order_status import IbkrOrderStatusTrigger

    sensor = IbkrOrderStatusSensor(
        task_id="wait", order_id=resting_order, deferrable=True, poke_interval=0.5, timeout=60
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    assert isinstance(trigger, IbkrOrderStatusTrigger) and deferred.value.method_name == "execute_complete"
    _, kwargs = trigger.serialize()
    rebuilt = IbkrOrderStatusTrigger(**kwargs)  # what the triggerer does

    status_path = f"GET /v1/api/iserver/account/order/status/{resting_order}"
    before = fresh_sandbox.stats()["paths"][status_path]  # the sensor's own first look

    async def run_until_filled() -> tuple[dict[str, Any], float]:
        events = rebuilt.run()
        first = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(1.5)
        assert not first.done()  # still resting: the trigger follows it on the websocket
        moved = time.monotonic()
        await asyncio.to_thread(fresh_sandbox.set_price, VTI, 279.0)
        event = await asyncio.wait_for(first, timeout=20)
        return dict(event.payload), time.monotonic() - moved

    payload, seen_after = asyncio.run(run_until_filled())
    # one REST read when the socket connected, none while the order rested (poke_interval 0.5 s
    # would have polled three times), and the fill seen as the sandbox pushed it
    assert fresh_sandbox.stats()["paths"][status_path] - before == 1
    assert fresh_sandbox.stats()["ws_connections"] == 1 and seen_after < 1.5, seen_after
    assert payload["status"] == "success" and payload["order_status"] == "Filled"
    assert sensor.execute_complete({}, payload) == {  # type: ignore[arg-type]
        "order_id": resting_order,
        "order_status": "Filled",
        "filled": 1.0,
    }


def test_trigger_times_out_at_the_deadline(resting_order: str) -> None:
    from ibkr_provider.triggers.order_status import IbkrOrderStatusTrigger

    trigger = IbkrOrderStatusTrigger(
        order_id=resting_order, ibkr_conn_id="ibkr_default", poll_interval=0.2, deadline=0.0
    )

    async def first_event() -> dict[str, Any]:
        return dict((await trigger.run().__anext__()).payload)

    assert asyncio.run(first_event()) == {
        "status": "timeout",
        "order_id": resting_order,
        "order_status": "Submitted",
    }


def test_a_cancelled_order_fails_the_sensor(
    resting_order: str, fresh_sandbox: RunningSandbox, isolated_session_cache: Path
) -> None:
    from airflow.sdk.exceptions import AirflowException

    from ibkr_provider.sensors.order_status import IbkrOrderStatusSensor

    # the hook's cache directory: one pacer for both (IBKR paces /tickle per user)
    client = IbkrClient(
        IbkrClientConfig.from_mapping(
            fresh_sandbox.client_config_values(session_cache_dir=str(isolated_session_cache))
        )
    )
    client.orders.cancel("DU2345678", resting_order)
    client.close()
    sensor = IbkrOrderStatusSensor(task_id="wait", order_id=resting_order)
    with pytest.raises(AirflowException, match="ended 'Cancelled'"):
        sensor.execute({})  # type: ignore[arg-type]


def test_a_permanent_error_in_the_trigger_fails_the_sensor_without_retries(
    resting_order: str, fresh_sandbox: RunningSandbox
) -> None:
    """IBKR knows no such order (400): the trigger says the error is permanent, and the sensor
    fails without retries; a transient one (503) is left to Airflow's retries."""
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    from ibkr_provider.sensors.order_status import IbkrOrderStatusSensor
    from ibkr_provider.triggers.order_status import IbkrOrderStatusTrigger

    trigger = IbkrOrderStatusTrigger(order_id="999999", ibkr_conn_id="ibkr_default", poll_interval=0.2)

    async def first_event() -> dict[str, Any]:
        return dict((await trigger.run().__anext__()).payload)

    event = asyncio.run(first_event())
    assert event["status"] == "error" and event["permanent"] is True and "400" in event["message"]
    sensor = IbkrOrderStatusSensor(task_id="wait", order_id="999999")
    with pytest.raises(AirflowFailException, match="Not retried"):
        sensor.execute_complete({}, event)  # type: ignore[arg-type]
    transient = {**event, "permanent": False}
    with pytest.raises(AirflowException) as excinfo:
        sensor.execute_complete({}, transient)  # type: ignore[arg-type]
    assert not isinstance(excinfo.value, AirflowFailException)
    with pytest.raises(AirflowFailException, match="Not retried"):
        sensor.execute({})  # type: ignore[arg-type]


def _still_open(sandbox: RunningSandbox, earlier: tuple[Any, ...] = ()) -> tuple[list[str], list[Any]]:
    """Keep-alive threads of this process, and its TCP connections to the sandbox (but those in
    ``earlier``: open before the test began, another test's to account for)."""
    import threading
    from urllib.parse import urlsplit

    import psutil

    port = urlsplit(sandbox.base_url).port
    threads = [t.name for t in threading.enumerate() if t.name.startswith("ibkr-keepalive")]
    sockets = [
        c
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED and c.laddr not in earlier
    ]
    return threads, sockets


def test_nothing_outlives_an_operator_run_twenty_pokes_and_a_trigger_run(
    resting_order: str, fresh_sandbox: RunningSandbox
) -> None:
    """Every client an operator, a sensor or a trigger builds is closed when it is done: no
    keep-alive thread and no connection to IBKR is left in the worker (or the triggerer)."""
    from airflow.sdk.exceptions import AirflowSensorTimeout

    from ibkr_provider.operators.market import IbkrMarketSnapshotOperator
    from ibkr_provider.sensors.order_status import IbkrOrderStatusSensor
    from ibkr_provider.triggers.order_status import IbkrOrderStatusTrigger

    threads, sockets = _still_open(fresh_sandbox)
    assert threads == []
    earlier = tuple(c.laddr for c in sockets)
    prices = IbkrMarketSnapshotOperator(task_id="prices", symbols="VTI").execute({})  # type: ignore[arg-type]
    assert prices["VTI"]["conid"] == VTI
    assert _still_open(fresh_sandbox, earlier) == ([], [])

    status_path = f"GET /v1/api/iserver/account/order/status/{resting_order}"
    before = fresh_sandbox.stats()["paths"].get(status_path, 0)
    sensor = IbkrOrderStatusSensor(task_id="wait", order_id=resting_order, poke_interval=0.05, timeout=60)
    for _ in range(20):
        assert sensor.poke({}).is_done is False  # type: ignore[arg-type]
    threads, _ = _still_open(fresh_sandbox, earlier)
    assert len(threads) == 1  # one client (one keep-alive) for all twenty pokes
    sensor.hook.close()  # what execute() does when the task ends
    assert fresh_sandbox.stats()["paths"][status_path] - before == 20
    assert _still_open(fresh_sandbox, earlier) == ([], [])
    short = IbkrOrderStatusSensor(task_id="wait2", order_id=resting_order, poke_interval=0.05, timeout=0.3)
    with pytest.raises(AirflowSensorTimeout):
        short.execute({})  # type: ignore[arg-type]
    assert _still_open(fresh_sandbox, earlier) == ([], [])

    trigger = IbkrOrderStatusTrigger(
        order_id=resting_order, ibkr_conn_id="ibkr_default", poll_interval=0.05, deadline=None
    )

    async def three_polls_then_cancel() -> None:
        events = trigger.run()
        first = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.5)
        first.cancel()  # what the triggerer does when the task is cleared or times out
        with pytest.raises(asyncio.CancelledError):
            await first
        await events.aclose()

    asyncio.run(three_polls_then_cancel())
    assert _still_open(fresh_sandbox, earlier) == ([], [])
    fresh_sandbox.set_price(VTI, 279.0)
    filled = IbkrOrderStatusTrigger(order_id=resting_order, ibkr_conn_id="ibkr_default", poll_interval=0.05)

    async def until_filled() -> dict[str, Any]:
        return dict((await filled.run().__anext__()).payload)

    assert asyncio.run(until_filled())["status"] == "success"
    assert _still_open(fresh_sandbox, earlier) == ([], [])


def test_the_trigger_polls_when_ibkr_refuses_the_websocket(
    resting_order: str, fresh_sandbox: RunningSandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    """IBKR refuses the socket (close 1008): the trigger says so once and polls instead."""
    from ibkr_provider.triggers.order_status import IbkrOrderStatusTrigger

    fresh_sandbox.configure(ws_refuse=True)
    trigger = IbkrOrderStatusTrigger(order_id=resting_order, ibkr_conn_id="ibkr_default", poll_interval=0.2)

    status_path = f"GET /v1/api/iserver/account/order/status/{resting_order}"

    async def until_filled() -> dict[str, Any]:
        events = trigger.run()
        first = asyncio.ensure_future(events.__anext__())
        # the order rests until the trigger has polled it a few times (a loaded machine is slow
        # to get there: wait for the polls, not a fixed time)
        for _ in range(200):
            await asyncio.sleep(0.1)
            if (await asyncio.to_thread(fresh_sandbox.stats))["paths"].get(status_path, 0) >= 4:
                break
        await asyncio.to_thread(fresh_sandbox.set_price, VTI, 279.0)
        return dict((await asyncio.wait_for(first, timeout=20)).payload)

    assert asyncio.run(until_filled())["order_status"] == "Filled"
    logged = capfd.readouterr().out
    assert logged.count("websocket is unavailable") == 1 and "1008 not authenticated" in logged
    assert f"polling order {resting_order} every 0.2 s instead" in logged
    polls = fresh_sandbox.stats()["paths"][status_path]
    assert polls >= 4  # polled every 0.2 s while it rested (after about 1 s of trying the socket)
    assert fresh_sandbox.stats()["ws_refused"] == 1


def test_a_fill_while_the_socket_was_silent_is_read_after_the_reconnect(
    resting_order: str, fresh_sandbox: RunningSandbox
) -> None:
    """The socket goes quiet (no heartbeat, no order update) and the order fills meanwhile: the
    trigger drops the silent socket, reconnects and reads the order once by REST."""
    from ibkr_provider.triggers.order_status import IbkrOrderStatusTrigger

    trigger = IbkrOrderStatusTrigger(
        order_id=resting_order, ibkr_conn_id="ibkr_default", poll_interval=30, stream_silence_seconds=1.0
    )

    async def until_filled() -> dict[str, Any]:
        events = trigger.run()
        first = asyncio.ensure_future(events.__anext__())
        deadline = time.monotonic() + 10
        while (await asyncio.to_thread(fresh_sandbox.stats)).get("ws_open", 0) < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert await asyncio.to_thread(fresh_sandbox.ws_fault, "silence") == 1
        await asyncio.to_thread(fresh_sandbox.set_price, VTI, 279.0)  # fills, and nobody is told
        return dict((await asyncio.wait_for(first, timeout=20)).payload)

    payload = asyncio.run(until_filled())
    assert payload["order_status"] == "Filled" and payload["status"] == "success"
    assert fresh_sandbox.stats()["ws_connections"] == 2  # the silent socket was replaced
