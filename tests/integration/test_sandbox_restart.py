"""The sandbox restarted as IBKR restarts its side (``--persist``): sessions and tokens end, the
book and the orders stay, and a client meets it with one new login and its orders where they were.
The chaos run (benchmarks/chaos.py) restarts the sandbox under a running cluster this way."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from ibkr_sandbox.process import start_sandbox

from ibkr_provider.client import IbkrClient
from ibkr_provider.client.models.orders import OrderTicket

pytestmark = pytest.mark.slow  # each stop waits out the sandbox's graceful shutdown

VTI = 12340038


def test_a_restart_ends_sessions_and_keeps_orders_positions_and_counters(
    sandbox_state: Callable[[str], Path], make_client: Callable[..., IbkrClient]
) -> None:
    # here, not at the top: the sandbox's Flex routes import FastAPI (0.2 s), which every pytest
    # worker would pay while collecting, also where this slow module is deselected
    from ibkr_sandbox.flex import FLEX_PATH, SANDBOX_FLEX_QUERY_ID

    sandbox = start_sandbox(
        sandbox_state("sandbox"), "--price-tick-seconds", "0", "--no-endpoint-limits", "--persist"
    )
    try:
        client = make_client(sandbox)
        ticket = OrderTicket(conid=VTI, side="BUY", quantity=3, coid="restart-kept-1")
        placed = client.orders.place("DU2345678", ticket)
        held = next(p for p in client.all_positions("DU2345678") if p.conid == VTI).quantity
        # a Flex statement asked for before the restart can be fetched after it
        token = json.loads(sandbox.flex_connection_json())["password"]
        flex = f"{sandbox.base_url}{FLEX_PATH}"
        sent = requests.get(
            f"{flex}/SendRequest", params={"t": token, "q": SANDBOX_FLEX_QUERY_ID, "v": "3"}, timeout=10
        )
        reference = sent.text.split("<ReferenceCode>")[1].split("<")[0]
        before = sandbox.stats()
        assert before["sso_sessions"] == 1

        sandbox = sandbox.restart()
        assert sandbox.stats()["active_sessions"] == 0  # IBKR's restart ends every session
        # the order and its cOID are still there, at the sandbox and to the client
        kept = [(str(o["order_id"]), o["coid"]) for o in sandbox.orders()]
        assert kept == [(placed.order_id, "restart-kept-1")]
        assert client.orders.find_by_coid("DU2345678", "restart-kept-1") is not None
        assert next(p for p in client.all_positions("DU2345678") if p.conid == VTI).quantity == held
        after = sandbox.stats()
        assert after["sso_sessions"] == 2  # the counters carried over, plus the one new login
        assert after["orders_placed"] == before["orders_placed"] == 1
        assert after["restarts"] == 1
        poll = requests.get(f"{flex}/GetStatement", params={"t": token, "q": reference, "v": "3"}, timeout=10)
        assert "<ErrorCode>1019<" in poll.text, poll.text  # being generated, not 1017 (unknown)
        # a second order after the restart is numbered past the kept one
        next_ticket = OrderTicket(conid=VTI, side="BUY", quantity=1)  # no cOID: no order-list read
        assert int(client.orders.place("DU2345678", next_ticket).order_id) > int(placed.order_id)
    finally:
        sandbox.stop()


def test_expired_sessions_cost_one_login_and_without_persist_a_restart_starts_afresh(
    sandbox_state: Callable[[str], Path], make_client: Callable[..., IbkrClient]
) -> None:
    sandbox = start_sandbox(sandbox_state("sandbox"), "--price-tick-seconds", "0", "--no-endpoint-limits")
    try:
        client = make_client(sandbox)
        client.orders.place("DU2345678", OrderTicket(conid=VTI, side="BUY", quantity=1, coid="gone-1"))
        assert sandbox.expire_sessions() == 1
        assert client.all_positions("DU2345678")  # recovered with a new login
        assert sandbox.stats()["sso_sessions"] == 2
        sandbox = sandbox.restart()
        assert sandbox.orders() == [] and sandbox.stats().get("restarts", 0) == 0
    finally:
        sandbox.stop()
