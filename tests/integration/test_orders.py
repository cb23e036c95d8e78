"""Orders against the sandbox over real HTTP: the sandbox's order book, the client's safe
placement, and the place-order operator's guards."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import (
    IbkrClient,
    IbkrErrorCode,
    IbkrOrderRefusedError,
    IbkrRequestError,
    IbkrValidationError,
)
from ibkr_provider.client.models.orders import OrderState, OrderTicket

if TYPE_CHECKING:
    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

MakeClient = Callable[..., IbkrClient]
VTI = 12340038  # seeded at 289.00
PROMPT = {
    "message_id": "o163",
    "text": "The order price exceeds the Percentage constraint of 3%.",
    "when": "always",
}


def _order_requests(sandbox: RunningSandbox) -> int:
    return sum(v for k, v in sandbox.stats()["paths"].items() if "/orders" in k or "/reply/" in k)


# ---------------------------------------------------------------------------- sandbox
def test_sandbox_accepts_both_body_forms_and_fills_market_orders(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox)
    held = next(p for p in client.all_positions("DU2345678") if p.conid == VTI).quantity
    order = {
        "acctId": "DU2345678",
        "conid": VTI,
        "side": "BUY",
        "orderType": "MKT",
        "quantity": 2,
        "tif": "DAY",
    }
    wrapped = client.request("POST", "/iserver/account/DU2345678/orders", json={"orders": [order]})
    bare = client.request("POST", "/iserver/account/DU2345678/orders", json=[order])
    assert wrapped[0]["order_status"] == "Filled" and bare[0]["order_status"] == "Filled"
    assert fresh_sandbox.stats()["orders_placed"] == 2
    vti = next(p for p in client.all_positions("DU2345678") if p.conid == VTI)
    assert vti.quantity == held + 4


def test_sandbox_rejects_duplicate_coid_and_unknown_reply(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox)
    client.brokerage_accounts()
    order = {"conid": VTI, "side": "BUY", "orderType": "LMT", "price": 1.0, "quantity": 1, "cOID": "dup-1"}
    first = client.request("POST", "/iserver/account/DU2345678/orders", json={"orders": [order]})
    assert first[0]["order_status"] == "Submitted"  # a limit far below the market rests
    again = client.request("POST", "/iserver/account/DU2345678/orders", json={"orders": [order]})
    assert again == {"error": "Order couldn't be submitted: Local order ID=dup-1 is already registered"}
    with pytest.raises(IbkrRequestError) as excinfo:
        client.request("POST", "/iserver/reply/nope", json={"confirmed": True})
    assert excinfo.value.status == 400 and "reply id not found" in str(excinfo.value)


def test_a_new_order_supersedes_the_open_question(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    """The sandbox's model of IBKR's race: one open question per session, replaced by a new order."""
    fresh_sandbox.configure(prompt_rules=[PROMPT])
    client = make_client(fresh_sandbox)
    client.brokerage_accounts()
    order = {"conid": VTI, "side": "BUY", "orderType": "LMT", "price": 1.0, "quantity": 1}
    first = client.request("POST", "/iserver/account/DU2345678/orders", json=[order])
    second = client.request("POST", "/iserver/account/DU1234567/orders", json=[order])
    with pytest.raises(IbkrRequestError, match="reply id not found"):
        client.request("POST", f"/iserver/reply/{first[0]['id']}", json={"confirmed": True})
    placed = client.request("POST", f"/iserver/reply/{second[0]['id']}", json={"confirmed": True})
    assert "order_id" in placed[0]
    stats = fresh_sandbox.stats()
    assert stats["questions_superseded"] == 1 and stats["orders_placed"] == 1


# ---------------------------------------------------------------------------- client
def test_allowed_prompt_is_confirmed_and_the_order_placed(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    fresh_sandbox.configure(prompt_rules=[PROMPT])
    client = make_client(fresh_sandbox)
    placed = client.orders.place(
        "DU2345678", OrderTicket(conid=VTI, side="BUY", quantity=1, coid="c-1"), allowed_message_ids={"o163"}
    )
    assert placed.status == "Filled" and placed.confirmed_message_ids == ("o163",) and not placed.adopted
    stats = fresh_sandbox.stats()
    assert stats["orders_placed"] == 1 and stats["order_replies"] == 1


def test_unknown_prompt_is_declined_and_nothing_placed(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    fresh_sandbox.configure(prompt_rules=[PROMPT])
    client = make_client(fresh_sandbox)
    with pytest.raises(IbkrOrderRefusedError) as excinfo:
        client.orders.place("DU2345678", OrderTicket(conid=VTI, side="BUY", quantity=1, coid="c-2"))
    assert excinfo.value.code is IbkrErrorCode.PROMPT_DECLINED and excinfo.value.permanent
    assert "Percentage constraint" in str(excinfo.value) and "o163" in str(excinfo.value)
    stats = fresh_sandbox.stats()
    assert stats.get("orders_placed", 0) == 0 and stats["replies_declined"] == 1


def test_same_coid_twice_places_once(fresh_sandbox: RunningSandbox, make_client: MakeClient) -> None:
    client = make_client(fresh_sandbox)
    ticket = OrderTicket(
        conid=VTI, side="BUY", quantity=1, order_type="LMT", limit_price=1.0, coid="retry-me"
    )
    first = client.orders.place("DU2345678", ticket)
    second = client.orders.place("DU2345678", ticket)
    assert (first.adopted, second.adopted) == (False, True) and first.order_id == second.order_id
    assert fresh_sandbox.stats()["orders_placed"] == 1


@pytest.mark.slow
def test_a_stale_order_list_falls_back_to_the_duplicate_coid_answer(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    """If IBKR's order list lags (or is a pre-flight's empty answer), the search misses the
    order and the POST goes out again: IBKR's duplicate-cOID rejection then leads to adoption."""
    client = make_client(fresh_sandbox)
    ticket = OrderTicket(conid=VTI, side="BUY", quantity=1, order_type="LMT", limit_price=1.0, coid="lagging")
    first = client.orders.place("DU2345678", ticket)
    fresh_sandbox.inject_fault(
        "/v1/api/iserver/account/orders", "stale", method="GET", body={"orders": [], "snapshot": True}
    )
    second = client.orders.place("DU2345678", ticket)
    assert second.adopted is True and second.order_id == first.order_id
    stats = fresh_sandbox.stats()
    assert stats["faults_fired"] == 1 and stats["orders_placed"] == 1
    assert stats["paths"]["POST /v1/api/iserver/account/DU2345678/orders"] == 2  # refused the 2nd time


@pytest.mark.parametrize(
    ("ticket", "field"),
    [
        (OrderTicket(conid=VTI, side="HOLD", quantity=1), "side"),
        (OrderTicket(conid=VTI, side="BUY"), "quantity"),
        (OrderTicket(conid=VTI, side="BUY", quantity=1, order_type="LMT"), "limit_price"),
        (OrderTicket(conid=VTI, side="BUY", quantity=-3), "quantity"),
        (OrderTicket(conid=0, side="BUY", quantity=1), "conid"),
    ],
)
def test_bad_tickets_fail_before_any_request(
    fresh_sandbox: RunningSandbox, make_client: MakeClient, ticket: OrderTicket, field: str
) -> None:
    client = make_client(fresh_sandbox)
    with pytest.raises(IbkrValidationError) as excinfo:
        client.orders.place("DU2345678", ticket)
    assert excinfo.value.field == field
    assert fresh_sandbox.stats()["requests_total"] == 0


# ---------------------------------------------------------------------------- operator
def _context(run_id: str = "manual__1", map_index: int = -1, try_number: int = 1) -> dict[str, Any]:
    ti = SimpleNamespace(
        dag_id="ibkr_rebalance", task_id="place", run_id=run_id, map_index=map_index, try_number=try_number
    )
    return {"ti": ti}


def _refusal(op: IbkrPlaceOrderOperator) -> IbkrOrderRefusedError:
    """Run the operator, expecting it to fail without retries because the provider refused the
    order; return the refusal (the failure's cause)."""
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="Not retried") as failed:
        op.execute(_context())  # type: ignore[arg-type]
    cause = failed.value.__cause__
    assert isinstance(cause, IbkrOrderRefusedError), repr(cause)
    return cause


@pytest.fixture
def conn_env(monkeypatch: pytest.MonkeyPatch, fresh_sandbox: RunningSandbox) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", fresh_sandbox.connection_json())


def test_operator_is_a_dry_run_by_default(conn_env: None, fresh_sandbox: RunningSandbox) -> None:
    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

    op = IbkrPlaceOrderOperator(task_id="place", account_id="DU2345678", conid=VTI, side="BUY", quantity=3)
    result = op.execute(_context())  # type: ignore[arg-type]
    assert result["dry_run"] is True and "order_id" not in result
    assert result["whatif"]["amount"] == pytest.approx(3 * 289.0)
    stats = fresh_sandbox.stats()
    assert stats["whatif_requests"] == 1 and stats.get("orders_placed", 0) == 0


def test_operator_refuses_a_live_account_without_allow_live(
    conn_env: None, fresh_sandbox: RunningSandbox
) -> None:
    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

    op = IbkrPlaceOrderOperator(
        task_id="place", account_id="U3456789", conid=VTI, side="BUY", quantity=1, dry_run=False
    )
    refusal = _refusal(op)
    assert refusal.code is IbkrErrorCode.LIVE_NOT_ALLOWED
    stats = fresh_sandbox.stats()
    assert not [p for p in stats["paths"] if "/orders" in p]  # not even a what-if, let alone an order


def test_operator_places_on_a_live_account_only_with_allow_live(
    conn_env: None, fresh_sandbox: RunningSandbox
) -> None:
    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

    op = IbkrPlaceOrderOperator(
        task_id="place",
        account_id="U3456789",
        conid=VTI,
        side="BUY",
        quantity=1,
        dry_run=False,
        allow_live=True,
    )
    assert op.execute(_context())["status"] == "Filled"  # type: ignore[arg-type]
    assert fresh_sandbox.stats()["orders_placed"] == 1


def test_operator_caps_refuse_before_any_order(conn_env: None, fresh_sandbox: RunningSandbox) -> None:
    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

    too_many = IbkrPlaceOrderOperator(
        task_id="place",
        account_id="DU2345678",
        conid=VTI,
        side="BUY",
        quantity=50,
        max_quantity=10,
        dry_run=False,
    )
    assert "max_quantity" in str(_refusal(too_many))
    too_big = IbkrPlaceOrderOperator(
        task_id="place",
        account_id="DU2345678",
        conid=VTI,
        side="BUY",
        quantity=10,
        max_notional=1000,
        dry_run=False,
    )
    refusal = _refusal(too_big)
    assert refusal.code is IbkrErrorCode.CAP_EXCEEDED and "max_notional 1,000.00" in str(refusal)
    assert "2,890.00" in str(refusal)  # the what-if amount of 10 x 289.00 it was refused for
    stats = fresh_sandbox.stats()
    assert stats.get("orders_placed", 0) == 0 and stats["whatif_requests"] == 1


def test_operator_refuses_when_the_whatif_states_no_amount(
    conn_env: None, fresh_sandbox: RunningSandbox
) -> None:
    """A notional cap the provider cannot check fails closed: the order is refused, not placed."""
    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

    fresh_sandbox.inject_fault(
        "/v1/api/iserver/account/DU2345678/orders/whatif",
        "stale",
        method="POST",
        body={"amount": {"commission": "1.00 USD"}, "warn": None, "error": None},
    )
    op = IbkrPlaceOrderOperator(
        task_id="place",
        account_id="DU2345678",
        conid=VTI,
        side="BUY",
        quantity=1,
        max_notional=1000,
        dry_run=False,
    )
    refusal = _refusal(op)
    assert refusal.code is IbkrErrorCode.CAP_UNCHECKABLE
    assert "max_notional 1,000.00 cannot be checked" in str(refusal) and "commission" in str(refusal)
    stats = fresh_sandbox.stats()
    assert stats["faults_fired"] == 1 and stats.get("orders_placed", 0) == 0
    assert not [p for p in stats["paths"] if p.startswith("POST") and p.endswith("/orders")]
    # Without a cap the same answer is no reason to refuse: the order is placed.
    fresh_sandbox.inject_fault(
        "/v1/api/iserver/account/DU2345678/orders/whatif",
        "stale",
        method="POST",
        body={"amount": {"commission": "1.00 USD"}, "warn": None, "error": None},
    )
    uncapped = IbkrPlaceOrderOperator(
        task_id="place", account_id="DU2345678", conid=VTI, side="BUY", quantity=1, dry_run=False
    )
    assert uncapped.execute(_context())["status"] == "Filled"  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_retried_task_places_exactly_one_order_and_journals_it_once(
    conn_env: None, fresh_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ibkr_provider.hooks.journal import IbkrJournalHook
    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator
    from ibkr_provider.workflows.order_guard import order_coid

    journal_db = tmp_path / "journal.db"
    monkeypatch.setenv(
        "AIRFLOW_CONN_IBKR_JOURNAL", json.dumps({"conn_type": "sqlite", "host": str(journal_db)})
    )
    op = IbkrPlaceOrderOperator(
        task_id="place",
        account_id="DU2345678",
        conid=VTI,
        symbol="VTI",
        side="BUY",
        quantity=1,
        order_type="LMT",
        limit_price=1.0,
        dry_run=False,
        journal_conn_id="ibkr_journal",
    )
    first = op.execute(_context(run_id="scheduled__2026-11-20"))  # type: ignore[arg-type]
    retry = op.execute(_context(run_id="scheduled__2026-11-20", try_number=2))  # type: ignore[arg-type]
    other_run = op.execute(_context(run_id="scheduled__2026-11-27"))  # type: ignore[arg-type]
    assert (
        first["coid"] == retry["coid"] == order_coid("ibkr_rebalance", "place", "scheduled__2026-11-20", -1)
    )
    assert retry["adopted"] is True and retry["order_id"] == first["order_id"]
    assert other_run["adopted"] is False and other_run["order_id"] != first["order_id"]
    assert fresh_sandbox.stats()["orders_placed"] == 2
    with IbkrJournalHook("ibkr_journal") as journal:
        rows = journal.rows(kind="order")
    assert [(r.run_id, r.order_id, r.coid) for r in rows] == [
        ("scheduled__2026-11-20", first["order_id"], first["coid"]),
        ("scheduled__2026-11-27", other_run["order_id"], other_run["coid"]),
    ]
    assert rows[0].symbol == "VTI" and rows[0].side == "BUY" and rows[0].quantity == "1"
    assert rows[0].price == "1.0" and rows[0].payload["whatif"]["commission"] is not None


def test_operator_declines_an_unknown_prompt(conn_env: None, fresh_sandbox: RunningSandbox) -> None:
    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

    fresh_sandbox.configure(prompt_rules=[{**PROMPT, "message_id": "o10331", "text": "Are you sure?"}])
    op = IbkrPlaceOrderOperator(
        task_id="place",
        account_id="DU2345678",
        conid=VTI,
        side="BUY",
        quantity=1,
        dry_run=False,
        allowed_message_ids=["o163"],
    )
    assert "Are you sure" in str(_refusal(op))
    stats = fresh_sandbox.stats()
    assert stats.get("orders_placed", 0) == 0 and stats["replies_declined"] == 1
    # the question was answered "no" once, and nothing else was sent after it
    replies = [p for p in stats["paths"] if "/reply/" in p]
    assert len(replies) == 1 and stats["paths"][replies[0]] == 1


def test_cancel_operator_cancels_a_resting_order(
    conn_env: None, fresh_sandbox: RunningSandbox, make_client: MakeClient, isolated_session_cache: Path
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from ibkr_provider.operators.orders import IbkrCancelOrderOperator

    # The same session cache as the operator's hook: one session for the username.
    client = make_client(fresh_sandbox, session_cache="file", session_cache_dir=str(isolated_session_cache))
    ticket = OrderTicket(
        conid=VTI, side="BUY", quantity=1, order_type="LMT", limit_price=1.0, coid="to-cancel"
    )
    placed = client.orders.place("DU2345678", ticket)
    op = IbkrCancelOrderOperator(task_id="cancel", account_id="DU2345678", order_id=placed.order_id)
    assert op.execute(_context())["msg"] == "Request was submitted"  # type: ignore[arg-type]
    assert client.orders.status(placed.order_id).status is OrderState.CANCELLED
    with pytest.raises(AirflowFailException, match="order_id") as failed:
        IbkrCancelOrderOperator(task_id="c", account_id="DU2345678", order_id="abc").execute(_context())  # type: ignore[arg-type]
    assert isinstance(failed.value.__cause__, IbkrValidationError)


def test_a_placement_whose_lease_lapsed_stops_before_the_post(
    fresh_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """The Redis placement lock is lost while the placement reads the order list (its lease of
    0.3 s cannot be renewed once the key is gone): the placement stops before the POST."""
    import threading
    import time

    import redis

    from ibkr_provider.client import IbkrClientConfig, IbkrSessionError
    from ibkr_provider.client.session.stores.redis_store import RedisSessionStore
    from tests.support.redis_server import redis_server

    with redis_server(tmp_path / "redis") as url:
        store = RedisSessionStore(url, lease_seconds=0.3)
        config = IbkrClientConfig.from_mapping(fresh_sandbox.client_config_values(session_cache=url))
        with IbkrClient(config, store=store) as client:
            client.brokerage_accounts()
            fresh_sandbox.inject_fault("/v1/api/iserver/account/orders", "delay", method="GET", delay=1.5)
            lock = f"ibkr:{client.session_key}-orders:lock"
            server = redis.Redis.from_url(url)

            def lose_the_lock() -> None:
                deadline = time.monotonic() + 10
                while not server.exists(lock) and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.2)
                server.delete(lock)

            thief = threading.Thread(target=lose_the_lock)
            thief.start()
            ticket = OrderTicket(conid=VTI, side="BUY", quantity=1, coid="lapse-1")
            with pytest.raises(IbkrSessionError, match="lapsed while held"):
                client.orders.place("DU2345678", ticket)
            thief.join(10)
            server.close()
    stats = fresh_sandbox.stats()
    assert stats["faults_fired"] == 1 and stats.get("orders_placed", 0) == 0
    assert not [p for p in stats["paths"] if p.startswith("POST") and p.endswith("/orders")]
