"""The live-account guard, attacked as issue 30 found it: against the sandbox's paper and live
accounts, through a front end that resolves dot segments (as nginx does), over real HTTP.

Each test counts what the sandbox received: a refused order means no what-if and no order
request reached it, and the sandbox's order book is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrErrorCode, IbkrOrderRefusedError, IbkrValidationError
from ibkr_provider.client.fields import flag, path_segment
from tests.support.resolving_proxy import ResolvingProxy

VTI = 12340038  # seeded at 289.00
LIVE = "U3456789"
PAPER = "DU1234567"


def _context(run_id: str = "manual__1") -> dict[str, Any]:
    return {"ti": SimpleNamespace(dag_id="guard", task_id="place", run_id=run_id, map_index=-1, try_number=1)}


def _order_traffic(sandbox: RunningSandbox) -> list[str]:
    """Every order-related request the sandbox received (what-ifs, orders, replies)."""
    return [p for p in sandbox.stats()["paths"] if "/orders" in p or "/reply/" in p]


@pytest.fixture
def proxied(monkeypatch: pytest.MonkeyPatch, fresh_sandbox: RunningSandbox) -> Iterator[ResolvingProxy]:
    """``ibkr_default`` reaches the sandbox through a dot-segment-resolving front end."""
    with ResolvingProxy(fresh_sandbox.base_url) as proxy:
        conn = json.loads(fresh_sandbox.connection_json())
        conn["host"] = proxy.url
        monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", json.dumps(conn))
        yield proxy


def _run(**kwargs: Any) -> BaseException:
    """Run the place-order operator; return why it failed (the failure's cause)."""
    from airflow.sdk.exceptions import AirflowFailException

    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

    op = IbkrPlaceOrderOperator(task_id="place", conid=VTI, side="BUY", quantity=1, **kwargs)
    with pytest.raises(AirflowFailException, match="Not retried") as failed:
        op.execute(_context())  # type: ignore[arg-type]
    cause = failed.value.__cause__
    assert cause is not None
    return cause


# ------------------------------------------------------------------ 1. booleans that guard money
@pytest.mark.parametrize("text", ["false", "False", " FALSE "])
def test_allow_live_false_as_text_refuses_the_live_order(
    proxied: ResolvingProxy, fresh_sandbox: RunningSandbox, text: str
) -> None:
    refusal = _run(account_id=LIVE, dry_run=False, allow_live=text)
    assert isinstance(refusal, IbkrOrderRefusedError) and refusal.code is IbkrErrorCode.LIVE_NOT_ALLOWED
    assert _order_traffic(fresh_sandbox) == [] and fresh_sandbox.stats().get("orders_placed", 0) == 0


@pytest.mark.parametrize("value", ["no", "0", "yes", 1, 0, None, "", "{{ params.allow_live }}", [False]])
def test_an_unclear_allow_live_is_refused_by_name(
    proxied: ResolvingProxy, fresh_sandbox: RunningSandbox, value: Any
) -> None:
    error = _run(account_id=LIVE, dry_run=False, allow_live=value)
    assert isinstance(error, IbkrValidationError) and error.field == "allow_live"
    assert fresh_sandbox.stats()["requests_total"] == 0


@pytest.mark.parametrize("value", ["maybe", "off", 0, None, "{{ params.dry_run }}"])
def test_an_unclear_dry_run_is_refused_by_name(
    proxied: ResolvingProxy, fresh_sandbox: RunningSandbox, value: Any
) -> None:
    error = _run(account_id=PAPER, dry_run=value)
    assert isinstance(error, IbkrValidationError) and error.field == "dry_run"
    assert fresh_sandbox.stats()["requests_total"] == 0


def test_a_template_rendered_as_text_keeps_the_live_guard(
    proxied: ResolvingProxy, fresh_sandbox: RunningSandbox
) -> None:
    """``"{{ params.allow_live }}"`` renders to the text ``"False"`` without native rendering:
    the operator's templated switches read it as false."""
    from airflow.sdk.exceptions import AirflowFailException

    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

    op = IbkrPlaceOrderOperator(
        task_id="place",
        account_id=LIVE,
        conid=VTI,
        side="BUY",
        quantity=1,
        dry_run="{{ params.dry_run }}",
        allow_live="{{ params.allow_live }}",
    )
    context: dict[str, Any] = {**_context(), "params": {"dry_run": False, "allow_live": False}}
    op.render_template_fields(context)  # type: ignore[arg-type]
    assert (op.whatif_only, op.allow_live) == ("False", "False")
    with pytest.raises(AirflowFailException) as failed:
        op.execute(context)  # type: ignore[arg-type]
    assert isinstance(failed.value.__cause__, IbkrOrderRefusedError)
    assert failed.value.__cause__.code is IbkrErrorCode.LIVE_NOT_ALLOWED
    assert _order_traffic(fresh_sandbox) == []


def test_guard_flag_reads_only_the_unambiguous_words() -> None:
    assert [flag("f", v) for v in (True, False, "true", "FALSE", " True ")] == [
        True,
        False,
        True,
        False,
        True,
    ]
    for value in ("t", "1", 1, None, "truee", b"true"):
        with pytest.raises(IbkrValidationError):
            flag("f", value)


# ------------------------------------------------------------------ 2. account ids and paper
DOT_SEGMENT_ATTACKS = [
    f"{PAPER}/../{LIVE}",
    f"{PAPER}%2F..%2F{LIVE}",
    f"{PAPER}/%2E%2E/{LIVE}",
    f"{PAPER}\\..\\{LIVE}",
    f"{PAPER}?x=/../{LIVE}",
    "..",
    f"{PAPER}.",
]


@pytest.mark.parametrize("account", DOT_SEGMENT_ATTACKS)
def test_a_crafted_account_id_is_refused_before_any_request(
    proxied: ResolvingProxy, fresh_sandbox: RunningSandbox, account: str
) -> None:
    error = _run(account_id=account, dry_run=False)
    assert isinstance(error, IbkrValidationError) and error.field == "account_id"
    assert "letters then digits" in str(error)
    assert fresh_sandbox.stats()["requests_total"] == 0
    assert proxied.seen == []


def test_the_client_refuses_crafted_account_ids_on_every_endpoint(
    proxied: ResolvingProxy, fresh_sandbox: RunningSandbox
) -> None:
    from ibkr_provider.client.models.orders import OrderTicket
    from ibkr_provider.hooks.ibkr import IbkrHook

    ticket = OrderTicket(conid=VTI, side="BUY", quantity=1)
    attack = f"{PAPER}/../{LIVE}"
    with IbkrHook() as hook:
        client = hook.get_conn()
        calls = [
            lambda: client.orders.whatif(attack, ticket),
            lambda: client.orders.place(attack, ticket),
            lambda: client.orders.cancel(attack, "1"),
            lambda: client.orders.status("1/../2"),
            lambda: client.account_summary(attack),
            lambda: client.account_ledger(attack),
            lambda: client.all_positions(attack),
            lambda: client.portfolio.is_paper(attack),
        ]
        for call in calls:
            with pytest.raises(IbkrValidationError):
                call()
    assert fresh_sandbox.stats()["requests_total"] == 0


def test_path_segments_are_percent_encoded_dots_included() -> None:
    assert path_segment("DU1/../U3") == "DU1%2F..%2FU3"
    assert path_segment("..") == "%2E%2E" and path_segment(".") == "%2E"
    assert path_segment("U3456789") == "U3456789"


def test_paper_or_live_comes_from_ibkr_not_from_the_id(
    proxied: ResolvingProxy, fresh_sandbox: RunningSandbox
) -> None:
    """A ``D`` account that IBKR reports as live needs allow_live; the paper account next to it
    places without it."""
    fresh_sandbox.set_account_kind(PAPER, paper=False)
    refusal = _run(account_id=PAPER, dry_run=False)
    assert isinstance(refusal, IbkrOrderRefusedError) and refusal.code is IbkrErrorCode.LIVE_NOT_ALLOWED
    assert "treated as live" in str(refusal)
    assert _order_traffic(fresh_sandbox) == []

    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

    paper = IbkrPlaceOrderOperator(
        task_id="place", account_id="DU2345678", conid=VTI, side="BUY", quantity=1, dry_run=False
    )
    assert paper.execute(_context())["status"] == "Filled"  # type: ignore[arg-type]
    assert fresh_sandbox.stats()["orders_placed"] == 1


def test_an_account_ibkr_says_nothing_about_is_live(
    proxied: ResolvingProxy, fresh_sandbox: RunningSandbox
) -> None:
    """An account missing from IBKR's lists (``DU9999999`` belongs to no login here) is live."""
    refusal = _run(account_id="DU9999999", dry_run=False)
    assert isinstance(refusal, IbkrOrderRefusedError) and refusal.code is IbkrErrorCode.LIVE_NOT_ALLOWED
    assert _order_traffic(fresh_sandbox) == []


def test_paper_rule() -> None:
    from ibkr_provider.client.models.paper import account_is_paper

    demo = [{"accountId": "X1", "type": "DEMO"}]
    assert account_is_paper("X1", login_is_paper=None, accounts=demo)
    assert account_is_paper("X1", login_is_paper=True, accounts=[])
    assert not account_is_paper("X1", login_is_paper=False, accounts=demo)  # IBKR contradicts itself
    assert not account_is_paper(
        "X1", login_is_paper=True, accounts=[{"accountId": "X1", "type": "INDIVIDUAL"}]
    )
    assert not account_is_paper("X1", login_is_paper="true", accounts=[])  # not a real boolean
    assert not account_is_paper("X1", login_is_paper=None, accounts=[])
    assert not account_is_paper("DU1", login_is_paper=None, accounts=demo)


# ------------------------------------------------------------------ 3. caps and numbers
def test_max_quantity_applies_to_a_cash_quantity_order(
    proxied: ResolvingProxy, fresh_sandbox: RunningSandbox
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

    op = IbkrPlaceOrderOperator(
        task_id="place",
        account_id="DU2345678",
        conid=VTI,
        side="BUY",
        cash_quantity=1000,
        max_quantity=1,
        dry_run=False,
    )
    with pytest.raises(AirflowFailException) as failed:
        op.execute(_context())  # type: ignore[arg-type]
    refusal = failed.value.__cause__
    assert isinstance(refusal, IbkrOrderRefusedError) and refusal.code is IbkrErrorCode.CAP_EXCEEDED
    assert "exceeds max_quantity 1" in str(refusal) and "289" in str(refusal)
    assert _order_traffic(fresh_sandbox) == []
    within = IbkrPlaceOrderOperator(
        task_id="place",
        account_id="DU2345678",
        conid=VTI,
        side="BUY",
        cash_quantity=1000,
        max_quantity=4,
        dry_run=False,
    )
    assert within.execute(_context("manual__2"))["status"] == "Filled"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quantity", float("nan")),
        ("quantity", "nan"),
        ("quantity", float("inf")),
        ("quantity", "-1"),
        ("quantity", True),
        ("limit_price", float("nan")),
        ("max_quantity", float("nan")),
        ("max_notional", "inf"),
        ("max_notional", 0),
    ],
)
def test_non_finite_numbers_are_named_errors(
    proxied: ResolvingProxy, fresh_sandbox: RunningSandbox, field: str, value: Any
) -> None:
    kwargs: dict[str, Any] = {"account_id": PAPER, "dry_run": False, field: value}
    if field == "limit_price":
        kwargs["order_type"] = "LMT"
    from airflow.sdk.exceptions import AirflowFailException

    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

    base: dict[str, Any] = {"task_id": "place", "conid": VTI, "side": "BUY", "quantity": 1}
    op = IbkrPlaceOrderOperator(**{**base, **kwargs})
    with pytest.raises(AirflowFailException) as failed:
        op.execute(_context())  # type: ignore[arg-type]
    error = failed.value.__cause__
    assert isinstance(error, IbkrValidationError) and error.field == field, repr(error)
    assert fresh_sandbox.stats()["requests_total"] == 0


def test_a_retry_with_no_earlier_order_meets_every_guard(
    proxied: ResolvingProxy, fresh_sandbox: RunningSandbox
) -> None:
    """A retry first looks for the order an earlier try placed (a read of the order list); with
    none there, it is refused exactly as a first try would be, and nothing is posted."""
    from airflow.sdk.exceptions import AirflowFailException

    from ibkr_provider.operators.orders import IbkrPlaceOrderOperator

    retry = {
        "ti": SimpleNamespace(dag_id="guard", task_id="place", run_id="manual__1", map_index=-1, try_number=2)
    }

    def op(**kwargs: Any) -> IbkrPlaceOrderOperator:
        return IbkrPlaceOrderOperator(task_id="place", conid=VTI, side="BUY", quantity=1, **kwargs)

    with pytest.raises(AirflowFailException, match="allow_live"):
        op(account_id=LIVE, dry_run=False, allow_live=False).execute(retry)  # type: ignore[arg-type]
    with pytest.raises(AirflowFailException, match="but plan ffffffffffffffff was approved"):
        unapproved = op(account_id=PAPER, dry_run=False, plan_hash="a" * 64, approved_plan_hash="f" * 64)
        unapproved.execute(retry)  # type: ignore[arg-type]
    assert op(account_id=PAPER).execute(retry)["dry_run"] is True  # type: ignore[arg-type]
    posted = [p for p in fresh_sandbox.stats()["paths"] if p.startswith("POST ") and p.endswith("/orders")]
    assert posted == [] and fresh_sandbox.stats().get("orders_placed", 0) == 0
