"""Symbol resolution and snapshots with IBKR's pre-flight behaviour, over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrClient, IbkrNotFoundError, IbkrRequestError, IbkrValidationError

MakeClient = Callable[..., IbkrClient]


def test_symbols_resolve_and_the_snapshot_waits_past_the_preflight(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox)
    conids = client.market_data.resolve_conids(["VTI", "bnd"])
    assert conids == {"VTI": 12340038, "bnd": 43645865}
    quotes = client.market_data.snapshot(list(conids.values()), interval=0.05)
    assert quotes[12340038].last == 289.0 and quotes[43645865].last == 72.5
    assert quotes[12340038].bid == Decimal("288.99") and quotes[12340038].ask == Decimal("289.01")
    # The first snapshot answered without fields (the pre-flight); the client polled again.
    assert fresh_sandbox.stats()["paths"]["GET /v1/api/iserver/marketdata/snapshot"] == 2


def test_unknown_symbol_names_the_field(fresh_sandbox: RunningSandbox, make_client: MakeClient) -> None:
    with pytest.raises(IbkrNotFoundError, match="symbol"):
        make_client(fresh_sandbox).market_data.resolve_conids(["NOPE"])


def test_incomplete_snapshot_is_an_error_not_a_partial_answer(
    fresh_sandbox: RunningSandbox, make_client: MakeClient
) -> None:
    client = make_client(fresh_sandbox)
    with pytest.raises(IbkrRequestError, match="missing fields"):
        client.market_data.snapshot([12340038], fields=("31", "7762"), max_polls=3, interval=0.05)


def test_market_snapshot_operator_returns_numbers(
    monkeypatch: pytest.MonkeyPatch, fresh_sandbox: RunningSandbox
) -> None:
    from ibkr_provider.operators.market import IbkrMarketSnapshotOperator

    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", fresh_sandbox.connection_json())
    op = IbkrMarketSnapshotOperator(task_id="prices", symbols="VTI, GLD")
    assert op.execute({}) == {  # type: ignore[arg-type]
        "VTI": {"conid": 12340038, "31": 289.0, "84": 288.99, "86": 289.01},
        "GLD": {"conid": 51529211, "31": 243.0, "84": 242.99, "86": 243.01},
    }


def test_trades_and_pnl(fresh_sandbox: RunningSandbox, make_client: MakeClient) -> None:
    from ibkr_provider.client.models.orders import OrderTicket

    client = make_client(fresh_sandbox)
    placed = client.orders.place("DU2345678", OrderTicket(conid=12340038, side="BUY", quantity=3, coid="t-1"))
    (trade,) = client.iserver.trades(days=1, account_id="DU2345678")
    assert trade["order_ref"] == "t-1" and trade["size"] == 3 and trade["side"] == "B"
    assert placed.status == "Filled"
    (fill,) = client.iserver.executions(days=1, account_id="DU2345678")
    assert (fill.coid, fill.side, fill.size, fill.commission) == ("t-1", "BUY", 3, Decimal("1.00"))
    assert fill.price == Decimal("289.0") and fill.time is not None
    pnl = client.pnl()
    assert set(pnl) == {"DU1234567", "DU2345678", "U3456789"} and (pnl["DU2345678"].daily_pnl or 0) > 0
    with pytest.raises(IbkrValidationError, match="days"):
        client.iserver.trades(days=30)


def test_an_unknown_symbol_fails_the_snapshot_operator_without_retries(
    monkeypatch: pytest.MonkeyPatch, fresh_sandbox: RunningSandbox
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from ibkr_provider.operators.market import IbkrMarketSnapshotOperator

    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", fresh_sandbox.connection_json())
    op = IbkrMarketSnapshotOperator(task_id="quotes", symbols=["VTI", "NOPE"])
    with pytest.raises(AirflowFailException, match="Not retried") as failed:
        op.execute({})  # type: ignore[arg-type]
    assert isinstance(failed.value.__cause__, IbkrNotFoundError)
    assert "'NOPE'" in str(failed.value)
