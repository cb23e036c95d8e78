"""Benchmark: how soon a deferred order wait sees a fill, and what waiting costs, with IBKR's
websocket against polling every 30 s (issue 23).

Against a sandbox (market clock stopped; this script moves prices), with the real
``IbkrOrderStatusTrigger`` in one event loop as in a triggerer:

1. Fill latency: ``fills`` resting limit orders, one trigger each, the orders filled one at a
   time ``gap`` seconds apart; latency is from the price move to the trigger's event. Once with
   the stream, once polling every ``poll_interval`` (30 s, the rebalance DAG's default).
2. REST requests while ``waiters`` orders rest for ``wait_seconds``: status requests after the
   triggers have started following (the stream's one read per connect excluded), stream against
   polling.
3. Drops: ``drops`` times, the socket is dropped and the order filled at once, while the socket
   is down: a fill not seen within 10 s is missed.

Setup orders go straight to IBKR's order endpoint (``client.request``): the provider's own
placement checks the live orders first, which IBKR paces at 1 per 5 s.

Prints ``RESULT fill_latency_median_s=... fill_latency_max_s=... rest_requests_while_waiting=...
missed=...`` (the stream's figures) for scripts, and a Markdown section for docs/benchmarks.md.
Run: ``.venv/bin/python benchmarks/fill_latency.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sandbox"))

VTI = 12340038
PRICE = 289.0


@dataclass
class Figures:
    stream_latencies: list[float]
    poll_latencies: list[float]
    stream_requests: int
    poll_requests: int
    waiters: int
    wait_seconds: float
    drops: int
    missed: int


def _rest_order(client: Any, limit: float, coid: str) -> str:
    from ibkr_provider.client.models.orders import OrderTicket

    ticket = OrderTicket(conid=VTI, side="BUY", quantity=1, order_type="LMT", limit_price=limit, coid=coid)
    answer = client.request(
        "POST", "/iserver/account/DU2345678/orders", json={"orders": [ticket.to_json("DU2345678")]}
    )
    return str(answer[0]["order_id"])


def _status_requests(sandbox: Any, order_ids: list[str]) -> int:
    paths = sandbox.stats()["paths"]
    return sum(paths.get(f"GET /v1/api/iserver/account/order/status/{o}", 0) for o in order_ids)


async def _wait_event(trigger: Any) -> float:
    event = await trigger.run().__anext__()
    assert event.payload["status"] == "success", event.payload
    return time.monotonic()


async def _resting_orders(sandbox: Any, client: Any, n: int, tag: str) -> tuple[list[float], list[str]]:
    """``n`` resting BUY orders at limits 50 cents apart below the price (reset to ``PRICE``):
    their limits and order ids."""
    sandbox.set_price(VTI, PRICE)
    limits = [round(PRICE - 1 - i * 0.5, 2) for i in range(n)]
    ids = [
        await asyncio.to_thread(_rest_order, client, limit, f"{tag}-{i}-{time.time_ns()}")
        for i, limit in enumerate(limits)
    ]
    return limits, ids


async def _stream_latencies(sandbox: Any, client: Any, n: int) -> list[float]:
    """``n`` resting orders at limits 50 cents apart, filled one at a time by a price step, each
    awaited before the next."""
    from ibkr_provider.triggers.order_status import IbkrOrderStatusTrigger

    limits, ids = await _resting_orders(sandbox, client, n, "lat-s")
    waits = [
        asyncio.ensure_future(_wait_event(IbkrOrderStatusTrigger(order_id=o, ibkr_conn_id="ibkr_default")))
        for o in ids
    ]
    await asyncio.sleep(3)  # every trigger connected and following
    latencies = []
    for limit, wait in zip(limits, waits, strict=True):
        moved = time.monotonic()
        await asyncio.to_thread(sandbox.set_price, VTI, round(limit - 0.01, 2))
        latencies.append(await asyncio.wait_for(wait, timeout=30) - moved)
    return latencies


async def _poll_latencies(sandbox: Any, client: Any, n: int, poll: float) -> list[float]:
    """Polling: ``n`` orders, filled at spread moments within one polling interval."""
    from ibkr_provider.triggers.order_status import IbkrOrderStatusTrigger

    limits, ids = await _resting_orders(sandbox, client, n, "lat-p")
    triggers = [
        IbkrOrderStatusTrigger(order_id=o, ibkr_conn_id="ibkr_default", poll_interval=poll, use_stream=False)
        for o in ids
    ]
    waits = [asyncio.ensure_future(_wait_event(t)) for t in triggers]
    await asyncio.sleep(1)
    moved = []
    for limit in limits:
        moved.append(time.monotonic())
        await asyncio.to_thread(sandbox.set_price, VTI, round(limit - 0.01, 2))
        await asyncio.sleep(poll / n)
    seen = await asyncio.wait_for(asyncio.gather(*waits), timeout=poll * 3)
    return [s - m for s, m in zip(seen, moved, strict=True)]


async def _requests_while_waiting(
    sandbox: Any, client: Any, n: int, seconds: float, poll: float
) -> tuple[int, int]:
    from ibkr_provider.triggers.order_status import IbkrOrderStatusTrigger

    sandbox.set_price(VTI, PRICE)
    made = {}
    for kind in ("stream", "poll"):
        made[kind] = [
            await asyncio.to_thread(_rest_order, client, 200.0, f"w-{kind}-{i}-{time.time_ns()}")
            for i in range(n)
        ]
    tasks = [
        asyncio.ensure_future(
            _wait_event(
                IbkrOrderStatusTrigger(
                    order_id=o, ibkr_conn_id="ibkr_default", poll_interval=poll, use_stream=kind == "stream"
                )
            )
        )
        for kind, ids in made.items()
        for o in ids
    ]
    await asyncio.sleep(3)  # all following (stream) or past their first poll
    before = {kind: _status_requests(sandbox, ids) for kind, ids in made.items()}
    await asyncio.sleep(seconds)
    after = {kind: _status_requests(sandbox, ids) for kind, ids in made.items()}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return after["stream"] - before["stream"], after["poll"] - before["poll"]


async def _drops(sandbox: Any, client: Any, n: int) -> int:
    from ibkr_provider.triggers.order_status import IbkrOrderStatusTrigger

    missed = 0
    for i in range(n):
        sandbox.set_price(VTI, PRICE)
        order_id = await asyncio.to_thread(_rest_order, client, PRICE - 1, f"drop-{i}-{time.time_ns()}")
        trigger = IbkrOrderStatusTrigger(order_id=order_id, ibkr_conn_id="ibkr_default", poll_interval=30)
        wait = asyncio.ensure_future(_wait_event(trigger))
        deadline = time.monotonic() + 10
        while sandbox.stats().get("ws_open", 0) < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(sandbox.ws_fault, "drop")
        await asyncio.to_thread(sandbox.set_price, VTI, PRICE - 1.01)  # fills while the socket is down
        try:
            await asyncio.wait_for(wait, timeout=10)
        except TimeoutError:
            missed += 1
            wait.cancel()
    return missed


def measure(
    fills: int = 20, waiters: int = 50, wait_seconds: float = 300, drops: int = 20, poll: float = 30.0
) -> Figures:
    from ibkr_sandbox.process import start_sandbox

    from ibkr_provider.client import IbkrClient, IbkrClientConfig

    with tempfile.TemporaryDirectory(prefix="ibkr-fill-latency-") as tmp:
        os.environ["AIRFLOW_HOME"] = tmp
        sandbox = start_sandbox(Path(tmp) / "sandbox", "--price-tick-seconds", "0")
        os.environ["AIRFLOW_CONN_IBKR_DEFAULT"] = sandbox.connection_json()
        # one IBKR session for this script's client and the triggers' (a second login competes)
        os.environ["AIRFLOW__IBKR__SESSION_CACHE_DIR"] = str(Path(tmp) / "cache")
        os.environ["AIRFLOW__CORE__FERNET_KEY"] = ""
        sandbox.configure(endpoint_limits=False)  # setup orders in bulk; the triggers' requests are counted
        values = sandbox.client_config_values(session_cache=f"file://{Path(tmp) / 'cache'}")
        client = IbkrClient(IbkrClientConfig.from_mapping(values))
        try:

            async def run() -> Figures:
                stream = await _stream_latencies(sandbox, client, fills)
                polled = await _poll_latencies(sandbox, client, fills, poll)
                stream_requests, poll_requests = await _requests_while_waiting(
                    sandbox, client, waiters, wait_seconds, poll
                )
                missed = await _drops(sandbox, client, drops)
                return Figures(
                    stream, polled, stream_requests, poll_requests, waiters, wait_seconds, drops, missed
                )

            return asyncio.run(run())
        finally:
            client.close()
            sandbox.stop()


def markdown(f: Figures) -> str:
    def row(name: str, values: list[float]) -> str:
        return f"| {name} | {len(values)} | {statistics.median(values):.3f} | {max(values):.3f} |"

    return "\n".join(
        [
            "## Fill to trigger event: IBKR's websocket against polling",
            "",
            "`benchmarks/fill_latency.py` (the real `IbkrOrderStatusTrigger` against the sandbox, one "
            "event loop as in a triggerer; seconds from the price move that fills an order to the "
            "trigger's event):",
            "",
            "| Wait | Fills | Median s | Worst s |",
            "|---|---|---|---|",
            row("websocket (`sor`)", f.stream_latencies),
            row("polling every 30 s", f.poll_latencies),
            "",
            f"Status requests while {f.waiters} orders rested {f.wait_seconds:g} s (after the triggers "
            f"started): websocket **{f.stream_requests}**, polling every 30 s **{f.poll_requests}**.",
            "",
            f"Socket dropped and the order filled while it was down, {f.drops} times: **{f.missed} "
            "missed** (each fill was read by REST after the reconnect).",
            "",
        ]
    )


def main() -> int:
    quick = "--quick" in sys.argv
    figures = measure(fills=5, waiters=10, wait_seconds=20, drops=5, poll=10.0) if quick else measure()
    sys.stdout.write(markdown(figures) + "\n")
    sys.stdout.write(
        f"RESULT fill_latency_median_s={statistics.median(figures.stream_latencies):.3f} "
        f"fill_latency_max_s={max(figures.stream_latencies):.3f} "
        f"rest_requests_while_waiting={figures.stream_requests} missed={figures.missed}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
