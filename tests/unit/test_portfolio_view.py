"""The portfolio page's figures from snapshot events and a snapshot file (pure, no Airflow)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from ibkr_provider.workflows.portfolio_view import (
    account_views,
    money,
    quantity,
    snapshot_items,
    svg_line_chart,
)

T0 = dt.datetime(2026, 12, 1, 21, 30, tzinfo=dt.timezone.utc)
SNAPSHOT = {
    "accounts": [
        {
            "account": {"accountId": "DU1", "currency": "EUR"},
            "summary": {},
            "ledger": {
                "BASE": {"cashbalance": 1500.5},
                "USD": {"cashbalance": 1200},
                "EUR": {"cashbalance": 400.25},
            },
            "positions": [
                {
                    "conid": 1,
                    "contractDesc": "AAA",
                    "position": 10,
                    "mktPrice": 5,
                    "mktValue": 50,
                    "unrealizedPnl": -2,
                    "currency": "EUR",
                },
                {
                    "conid": 2,
                    "contractDesc": "BBB",
                    "position": 1500,
                    "mktPrice": 0.1,
                    "mktValue": 150,
                    "unrealizedPnl": 3.5,
                    "currency": "USD",
                },
            ],
        }
    ]
}


def test_history_positions_weights_and_cash_of_each_account() -> None:
    events = [
        (T0 + dt.timedelta(days=1), {"accounts": {"DU1": {"net_liquidation": 1700.5}}}),
        (T0, {"accounts": {"DU1": {"net_liquidation": 1650}, "DU2": {"net_liquidation": 10}}}),
    ]
    latest = {account: (T0, item) for account, item in snapshot_items(SNAPSHOT).items()}
    du1, du2 = account_views(events, latest)
    assert du1.account_id == "DU1" and du1.currency == "EUR"
    assert du1.history == ((T0, Decimal("1650")), (T0 + dt.timedelta(days=1), Decimal("1700.5")))
    assert du1.net_liquidation == Decimal("1700.5") and du1.market_value == Decimal("200")
    assert [p.symbol for p in du1.sorted_positions("weight", descending=True)] == ["BBB", "AAA"]
    assert [p.weight for p in du1.sorted_positions("symbol", descending=False)] == [
        Decimal("0.25"),
        Decimal("0.75"),
    ]
    assert du1.cash == (("BASE", Decimal("1500.5")), ("EUR", Decimal("400.25")), ("USD", Decimal("1200")))
    assert du1.positions_as_of == T0
    assert du2.history == ((T0, Decimal("10")),) and du2.positions == ()  # in the events only
    assert du2.positions_as_of is None


def test_figures_carry_currency_and_separators() -> None:
    assert money(Decimal("10457205.891"), "USD") == "USD 10,457,205.89"
    assert money(None, "USD") == "n/a"
    assert quantity(Decimal("1500")) == "1,500" and quantity(Decimal("0.5000")) == "0.5"


def test_the_chart_has_a_dot_per_snapshot_and_labels_its_range() -> None:
    points = [(T0 + dt.timedelta(days=i), Decimal(v)) for i, v in enumerate(("100", "250.5", "175"))]
    svg = svg_line_chart(points, "USD")
    assert svg.count("<circle") == 3 and "USD 250.50" in svg and "USD 100.00" in svg
    assert svg_line_chart(points[:1], "USD").count("<circle") == 1
    assert "No snapshot yet" in svg_line_chart([], "USD")
