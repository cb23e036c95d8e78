"""What the portfolio page shows, from what the snapshot DAG already wrote (no Airflow, no IBKR).

Net liquidation over time comes from the snapshot Asset's events (each event's extra carries every
account's headline figures); an account's positions and cash from the newest snapshot's JSON file
that holds it (IBKR's own payloads, read back with the client's models). Figures stay ``Decimal`` and are
formatted with their currency and thousands separators; the chart is SVG drawn here, so the page
needs no script and no network.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ibkr_provider.client.models.numbers import to_decimal
from ibkr_provider.client.models.portfolio import Account, Ledger, Position

#: The positions table's columns (``PositionRow`` fields) and their headings; each sorts it.
COLUMNS = {
    "symbol": "Symbol",
    "quantity": "Quantity",
    "price": "Price",
    "market_value": "Market value",
    "weight": "Weight",
    "unrealized_pnl": "Unrealised PnL",
    "currency": "Currency",
}
SORT_KEYS = tuple(COLUMNS)


@dataclass(frozen=True)
class PositionRow:
    symbol: str
    quantity: Decimal
    price: Decimal | None
    market_value: Decimal | None
    weight: Decimal | None
    unrealized_pnl: Decimal | None
    currency: str


@dataclass(frozen=True)
class AccountView:
    """One account: its net liquidation at each snapshot, and the latest snapshot's positions
    and cash by currency (``BASE`` is IBKR's total in the base currency)."""

    account_id: str
    currency: str
    history: tuple[tuple[dt.datetime, Decimal], ...]
    positions: tuple[PositionRow, ...]
    cash: tuple[tuple[str, Decimal], ...]
    positions_as_of: dt.datetime | None = None

    @property
    def net_liquidation(self) -> Decimal | None:
        return self.history[-1][1] if self.history else None

    @property
    def market_value(self) -> Decimal:
        return sum((p.market_value or Decimal(0) for p in self.positions), Decimal(0))

    def sorted_positions(self, key: str, descending: bool) -> list[PositionRow]:
        """Positions by ``key`` (one of :data:`SORT_KEYS`; unknown: market value), None last."""
        key = key if key in SORT_KEYS else "market_value"
        present = [p for p in self.positions if getattr(p, key) is not None]
        missing = [p for p in self.positions if getattr(p, key) is None]
        return sorted(present, key=lambda p: getattr(p, key), reverse=descending) + missing


def money(value: Decimal | None, currency: str = "") -> str:
    """``USD 10,457,205.89``; ``n/a`` for a figure IBKR did not give."""
    if value is None:
        return "n/a"
    return f"{currency} {value:,.2f}".strip()


def quantity(value: Decimal) -> str:
    """``1,250`` or ``0.5``: a quantity with separators and without trailing zeros."""
    text = f"{value:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def account_views(
    events: Sequence[tuple[dt.datetime, Mapping[str, Any]]],
    latest: Mapping[str, tuple[dt.datetime, Mapping[str, Any]]],
) -> list[AccountView]:
    """Each account with its net liquidation at each of ``events`` (time, extra), oldest first,
    and the positions and cash of ``latest[account]`` (the time and the account's item of the
    newest snapshot file holding it: a run can snapshot some accounts only)."""
    history: dict[str, list[tuple[dt.datetime, Decimal]]] = {}
    for at, extra in sorted(events, key=lambda e: e[0]):
        for account_id, figures in (extra.get("accounts") or {}).items():
            value = to_decimal((figures or {}).get("net_liquidation"))
            if value is not None:
                history.setdefault(str(account_id), []).append((at, value))
    views = []
    for account_id in sorted({*history, *latest}):
        as_of, item = latest.get(account_id, (None, {}))
        account = Account.from_json(item["account"]) if item.get("account") else None
        currency = (account.currency if account else None) or "USD"
        positions = [Position.from_json(row) for row in item.get("positions", [])]
        # an account only the events name (no snapshot file holds it) has no ledger to show
        ledger = Ledger.from_json(account_id, item["ledger"]) if item.get("ledger") else None
        views.append(
            AccountView(
                account_id=account_id,
                currency=currency,
                history=tuple(history.get(account_id, [])),
                positions=_rows(positions, currency),
                cash=tuple(
                    (name, entry.cash_balance)
                    for name, entry in sorted(ledger.entries.items() if ledger else ())
                    if entry.cash_balance is not None
                ),
                positions_as_of=as_of,
            )
        )
    return views


def snapshot_items(snapshot: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Account id -> its item in a snapshot file (``{"accounts": [{"account": ..., ...}]}``)."""
    return {
        str(item["account"].get("accountId") or item["account"].get("id")): item
        for item in snapshot.get("accounts", [])
        if isinstance(item, Mapping) and isinstance(item.get("account"), Mapping)
    }


def _rows(positions: Sequence[Position], currency: str) -> tuple[PositionRow, ...]:
    total = sum((abs(p.market_value or Decimal(0)) for p in positions), Decimal(0))
    return tuple(
        PositionRow(
            symbol=p.symbol or str(p.conid),
            quantity=Decimal(str(p.quantity)),
            price=p.market_price,
            market_value=p.market_value,
            weight=(p.market_value / total) if total and p.market_value is not None else None,
            unrealized_pnl=p.unrealized_pnl,
            currency=p.currency or currency,
        )
        for p in positions
    )


def svg_line_chart(
    points: Sequence[tuple[dt.datetime, Decimal]], currency: str, *, width: int = 640, height: int = 180
) -> str:
    """Net liquidation over time as an inline SVG line with a dot per snapshot (``<circle>``),
    its lowest and highest values labelled. One point is a dot; none is a note."""
    if not points:
        return "<p>No snapshot yet: run the snapshot DAG.</p>"
    pad_x, pad_y = 90, 20
    times = [p[0].timestamp() for p in points]
    values = [float(p[1]) for p in points]
    t0, t1 = min(times), max(times)
    v0, v1 = min(values), max(values)
    span_t, span_v = (t1 - t0) or 1.0, (v1 - v0) or max(abs(v1), 1.0)

    def xy(t: float, v: float) -> tuple[float, float]:
        x = pad_x + (t - t0) / span_t * (width - pad_x - 10) if t1 > t0 else width / 2
        y = height - pad_y - (v - v0) / span_v * (height - 2 * pad_y) if v1 > v0 else height / 2
        return round(x, 1), round(y, 1)

    coords = [xy(t, v) for t, v in zip(times, values, strict=True)]
    line = " ".join(f"{x},{y}" for x, y in coords)
    dots = "".join(
        f'<circle cx="{x}" cy="{y}" r="3"><title>{html.escape(f"{at:%Y-%m-%d %H:%M} UTC")}: '
        f"{html.escape(money(value, currency))}</title></circle>"
        for (x, y), (at, value) in zip(coords, points, strict=True)
    )
    low, high = money(min(p[1] for p in points), currency), money(max(p[1] for p in points), currency)
    return (
        f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f"<title>Net liquidation, {len(points)} snapshot(s)</title>"
        f'<text x="4" y="{pad_y}" font-size="11">{html.escape(high)}</text>'
        f'<text x="4" y="{height - pad_y + 10}" font-size="11">{html.escape(low)}</text>'
        f'<polyline fill="none" stroke="#1f6feb" stroke-width="2" points="{line}"/>'
        f'<g fill="#1f6feb">{dots}</g></svg>'
    )
