"""Approval before placing, against the sandbox: the approval operator's decisions (dry run,
paper auto-approval, a person's Approve, a timeout) land in the journal, and a place task only
sends an order of the approved plan whose price has not moved (issue 22)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrClient, IbkrClientConfig

FITTING = {"AAPL": 0.1, "MSFT": 0.1, "SPY": 0.35, "VTI": 0.15, "BND": 0.2, "VXUS": 0.1}


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch, fresh_sandbox: RunningSandbox, tmp_path: Path) -> dict[str, Any]:
    """A real plan for DU2345678 (paper), the connections set, and a journal on SQLite."""
    from ibkr_provider.workflows.rebalance import order_kwargs, plan_for

    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", fresh_sandbox.connection_json())
    journal = {"conn_type": "sqlite", "host": str(tmp_path / "journal.db")}
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_JOURNAL", json.dumps(journal))
    # The test's client and the operators' are separate logins' worth of pacing: IBKR's 1 per 5 s
    # on /portfolio/accounts sends the second into a (here shortened) penalty box.
    fresh_sandbox.configure(penalty_seconds=1)
    with IbkrClient(IbkrClientConfig.from_mapping(fresh_sandbox.client_config_values())) as client:
        plan = plan_for(client, "DU2345678", FITTING, drift_band=0.02, min_trade=200)
    kwargs = order_kwargs(
        plan, order_type="MKT", limit_offset=0, dry_run=False, allow_live=False, allowed_message_ids=None
    )
    return {"plan": plan.as_json(), "orders": kwargs}


def _context(plan: Any, task_id: str = "approve") -> dict[str, Any]:
    ti = SimpleNamespace(
        dag_id="ibkr_rebalance",
        run_id="manual__approval",
        task_id=task_id,
        map_index=-1,
        xcom_pull=lambda task_ids, key=None: plan,
        xcom_push=lambda key, value: None,
    )
    return {"ti": ti, "task": None}


def _approval(**kwargs: Any) -> Any:
    from ibkr_provider.operators.approval import IbkrPlanApprovalOperator

    return IbkrPlanApprovalOperator(
        task_id="approve", plan_task_id="plan", journal_conn_id="ibkr_journal", **kwargs
    )


def _journal_rows() -> list[Any]:
    from ibkr_provider.hooks.journal import IbkrJournalHook

    with IbkrJournalHook("ibkr_journal") as journal:
        return journal.rows()


def test_decisions_before_anyone_is_asked(planned: dict[str, Any]) -> None:
    plan = planned["plan"]
    dry = _approval(dry_run=True).execute(_context(plan))
    assert dry["approved"] and dry["decision"] == "dry run" and not dry["asked"]
    assert _journal_rows() == []  # a dry run decides nothing
    auto = _approval(auto_approve_paper=True).execute(_context(plan))
    assert (
        auto["approved"]
        and auto["by"] == "auto_approve_paper"
        and auto["plan_hash"] == planned["orders"][0]["plan_hash"]
    )
    rows = _journal_rows()
    assert [r.kind for r in rows] == ["plan", "decision"] and rows[1].actor == "auto_approve_paper"
    assert rows[0].payload["account_id"] == "DU2345678" and rows[1].plan_hash == auto["plan_hash"]


def test_a_persons_approve_and_a_timeout_are_journaled(planned: dict[str, Any]) -> None:
    plan, approval = planned["plan"], _approval()
    at = dt.datetime(2026, 12, 4, 15, 0, tzinfo=dt.timezone.utc)
    approved = approval.execute_complete(
        _context(plan),
        {
            "chosen_options": ["Approve"],
            "params_input": {},
            "responded_at": at,
            "responded_by_user": {"id": "alice", "name": "alice"},
        },
    )
    assert approved["approved"] and approved["by"] == "alice" and approved["at"] == at.isoformat()
    timed_out = _approval().execute_complete(
        _context(plan),
        {"chosen_options": ["Reject"], "params_input": {}, "responded_at": at, "responded_by_user": None},
    )
    assert not timed_out["approved"] and timed_out["by"] == "timeout (default Reject)"
    decisions = [r for r in _journal_rows() if r.kind == "decision"]
    assert [d.actor for d in decisions] == ["alice"]  # one decision per plan: the first one stands


def test_only_the_approved_plan_at_the_approved_price_is_placed(
    planned: dict[str, Any], fresh_sandbox: RunningSandbox
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

    first = planned["orders"][0]
    context = {
        "ti": SimpleNamespace(
            dag_id="ibkr_rebalance",
            task_id="place_order",
            run_id="manual__approval",
            map_index=0,
            try_number=1,
        )
    }

    other_plan = IbkrPlaceOrderOperator(task_id="place_order", **first, approved_plan_hash="f" * 64)
    with pytest.raises(AirflowFailException, match="but plan ffffffffffffffff was approved"):
        other_plan.execute(context)  # type: ignore[arg-type]

    conid = int(first["conid"])
    moved = float(first["reference_price"]) * 1.03
    fresh_sandbox.set_price(conid, moved)
    drifted = IbkrPlaceOrderOperator(task_id="place_order", **first, approved_plan_hash=first["plan_hash"])
    with pytest.raises(AirflowFailException, match=r"moved \+3\.00% since the plan was approved"):
        drifted.execute(context)  # type: ignore[arg-type]
    assert fresh_sandbox.stats().get("orders_placed", 0) == 0

    fresh_sandbox.set_price(conid, float(first["reference_price"]))
    placed = IbkrPlaceOrderOperator(task_id="place_order", **first, approved_plan_hash=first["plan_hash"])
    assert placed.execute(context)["order_id"]  # type: ignore[arg-type]
    assert fresh_sandbox.stats()["orders_placed"] == 1


@pytest.mark.slow  # two reads of the order list: IBKR paces it at 1 per 5 s
def test_a_retry_adopts_its_earlier_trys_order_although_the_price_moved_since(
    planned: dict[str, Any], fresh_sandbox: RunningSandbox
) -> None:
    """IBKR took the first try's order and the answer was lost with it; by the retry the price
    has moved beyond ``max_price_drift``. The retry adopts and journals that order: a refusal
    saying "Nothing was placed" would leave a live order unfollowed (seen in the chaos run)."""
    from ibkr_provider.client.errors import IbkrConnectionError
    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

    first = planned["orders"][0]

    def attempt(try_number: int) -> dict[str, Any]:
        ti = SimpleNamespace(
            dag_id="ibkr_rebalance",
            task_id="place_order",
            run_id="manual__lost",
            map_index=0,
            try_number=try_number,
        )
        op = IbkrPlaceOrderOperator(
            task_id="place_order",
            **first,
            approved_plan_hash=first["plan_hash"],
            journal_conn_id="ibkr_journal",
        )
        return op.execute({"ti": ti})  # type: ignore[arg-type,no-any-return]

    fresh_sandbox.inject_fault("/v1/api/iserver/account/DU2345678/orders", "drop_after")
    with pytest.raises(IbkrConnectionError):  # left to Airflow's retry: the answer may come again
        attempt(1)
    assert fresh_sandbox.stats()["orders_placed"] == 1  # IBKR has it; the try never heard
    fresh_sandbox.set_price(int(first["conid"]), float(first["reference_price"]) * 1.03)
    retry = attempt(2)
    assert retry["adopted"] is True and retry["order_id"] and retry["whatif"] == {}
    assert fresh_sandbox.stats()["orders_placed"] == 1
    (row,) = [r for r in _journal_rows() if r.kind == "order"]
    assert row.order_id == retry["order_id"] and row.payload["adopted"] is True


def test_a_dca_plan_is_previewed_and_approved_like_a_rebalance(fresh_sandbox: RunningSandbox) -> None:
    from ibkr_provider.workflows.approval import approval_body, plan_hash
    from ibkr_provider.workflows.dca import plan_purchases

    with IbkrClient(IbkrClientConfig.from_mapping(fresh_sandbox.client_config_values())) as client:
        plan = plan_purchases(client, "DU2345678", {"VTI": 500, "BND": 250}).previewed(client)
    as_json = plan.as_json()
    assert as_json["paper"] is True and as_json["buys"] == "750"
    assert [o["cash_quantity"] for o in as_json["orders"]] == ["500", "250"]
    assert all(o["whatif"]["commission"] is not None and o["price"] for o in as_json["orders"])
    body = approval_body(as_json, digest=plan_hash(as_json))
    assert "| BUY 500 of VTI | MKT | - | 289.00 | 500.00 USD |" in body and "Weight now" not in body
    kwargs = plan.order_kwargs(dry_run=False, allow_live=False, allowed_message_ids=None)
    assert {k["plan_hash"] for k in kwargs} == {plan_hash(as_json)}
    assert kwargs[0]["reference_price"] == "289.00"
    # the cash amount is part of what is approved: another amount is another plan
    more = dict(as_json, orders=[dict(as_json["orders"][0], cash_quantity="5000"), as_json["orders"][1]])
    assert plan_hash(more) != plan_hash(as_json)
    assert (
        fresh_sandbox.stats()["whatif_requests"] == 2 and fresh_sandbox.stats().get("orders_placed", 0) == 0
    )


@pytest.mark.slow
def test_the_fill_wait_journals_the_end_state_and_each_fill_once(
    planned: dict[str, Any], fresh_sandbox: RunningSandbox
) -> None:
    from ibkr_provider.client import IbkrResponseError
    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator
    from ibkr_provider.sensors.order_status import IbkrOrderStatusSensor

    first = planned["orders"][0]
    context = {
        "ti": SimpleNamespace(
            dag_id="ibkr_rebalance",
            task_id="place_order",
            run_id="manual__approval",
            map_index=0,
            try_number=1,
        )
    }
    placed = IbkrPlaceOrderOperator(
        task_id="place_order", **first, approved_plan_hash=first["plan_hash"], journal_conn_id="ibkr_journal"
    ).execute(context)  # type: ignore[arg-type]
    wait_context = {
        "ti": SimpleNamespace(
            dag_id="ibkr_rebalance", task_id="wait_for_fill", run_id="manual__approval", map_index=0
        )
    }
    sensor = IbkrOrderStatusSensor(
        task_id="wait_for_fill", order_id=placed["order_id"], journal_conn_id="ibkr_journal"
    )
    # IBKR lists fills late: an order filled but not yet in /iserver/account/trades is an error
    # to retry, never a journal without its fill.
    fresh_sandbox.configure(trades_delay_seconds=3600)
    with pytest.raises(IbkrResponseError, match="lists 0 in 0 execution") as raised:
        sensor.execute(wait_context)  # type: ignore[arg-type]
    assert not raised.value.permanent  # Airflow retries it
    fresh_sandbox.configure(trades_delay_seconds=0)
    for _ in range(2):  # the retry journals; a second retry adds nothing
        outcome = IbkrOrderStatusSensor(
            task_id="wait_for_fill", order_id=placed["order_id"], journal_conn_id="ibkr_journal"
        ).execute(wait_context)  # type: ignore[arg-type]
        assert outcome["order_status"] == "Filled"
    rows = _journal_rows()
    assert [r.kind for r in rows] == ["order", "status", "fill"]
    order, status, fill = rows
    assert order.coid == status.coid == fill.coid == placed["coid"]
    assert (
        Decimal(fill.quantity or "") == Decimal(first["quantity"])
        and fill.commission == "1.00"
        and fill.price
    )
    assert fill.payload["time"] and status.payload["status"] == "Filled"


@pytest.mark.slow
def test_the_decision_each_order_and_each_fill_reach_a_mailbox_through_airflows_smtp_notifier(
    planned: dict[str, Any], fresh_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow's own SmtpNotifier, a real SMTP conversation: the decision, the placement and the
    fill (with IBKR's commission) arrive as mail; a mail server that is down is a warning, and
    the order it would have announced stands."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator
    from ibkr_provider.sensors.order_status import IbkrOrderStatusSensor
    from tests.support.smtp_server import smtp_server

    def mail() -> SmtpNotifier:
        return SmtpNotifier(
            to="ops@example.com",
            subject="[IBKR] {{ ibkr_event.subject }}",
            html_content="{{ ibkr_event.html }}",
        )

    first = planned["orders"][0]
    with smtp_server() as box:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", box.connection_json())
        decided = _approval(auto_approve_paper=True, notifiers=[mail()]).execute(_context(planned["plan"]))
        ti = SimpleNamespace(
            dag_id="ibkr_rebalance", task_id="place_order", run_id="manual__mail", map_index=0, try_number=1
        )
        placed = IbkrPlaceOrderOperator(
            task_id="place_order", **first, approved_plan_hash=decided["plan_hash"], notifiers=[mail()]
        ).execute({"ti": ti})  # type: ignore[arg-type]
        IbkrOrderStatusSensor(task_id="wait_for_fill", order_id=placed["order_id"], notifiers=mail()).execute(
            {"ti": ti}  # type: ignore[arg-type]
        )
        count = len(planned["plan"]["orders"])
        label = f"{first['side']} {first['quantity']} {first['symbol']}"
        assert box.subjects() == [
            f"[IBKR] Approve by auto_approve_paper: {count} IBKR order(s) on DU2345678 (paper)",
            f"[IBKR] Placed: {label} (conid {first['conid']}) on DU2345678 Filled",
            f"[IBKR] Order {placed['order_id']} Filled: {float(first['quantity']):g} filled",
        ]
        assert (
            f"Plan {decided['plan_hash'][:16]} for DU2345678: Approve by auto_approve_paper"
            in box.text_of("Approve by")
        )
        fill = box.text_of("Filled:")
        assert f"coid: {placed['coid']}" in fill and "commission 1.00" in fill and "fill 0000e0d5." in fill
    # the mailbox is gone: the next order still goes, with a warning in the log
    down = IbkrPlaceOrderOperator(
        task_id="place_order",
        **planned["orders"][1],
        approved_plan_hash=decided["plan_hash"],
        notifiers=[mail()],
    )
    second = SimpleNamespace(
        dag_id="ibkr_rebalance", task_id="place_order", run_id="manual__mail", map_index=1, try_number=1
    )
    assert down.execute({"ti": second})["order_id"]  # type: ignore[arg-type]
    assert fresh_sandbox.stats()["orders_placed"] == 2
