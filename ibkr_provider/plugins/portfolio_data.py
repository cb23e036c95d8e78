"""Where the portfolio page reads from: what the DAGs already wrote, never IBKR.

- The snapshot Asset's events in Airflow's metadata database (each one's extra: every account's
  headline figures and the files written), limited to the DAGs the user may read runs of.
- The latest snapshot's JSON file, at the ``ObjectStoragePath`` location its event names.
- The trade journal (connection ``ibkr_journal``, when it exists): each account's last
  rebalance plan, its decision and its fills.

Everything here blocks (database, files): the page calls it in a worker thread, so the API
server's event loop keeps serving everyone else.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: The Asset the example snapshot DAG writes (``dags/ibkr_portfolio_snapshot.py``).
SNAPSHOT_ASSET = "ibkr_portfolio_snapshot"
#: How many snapshots the chart draws at most (the latest ones).
MAX_POINTS = 500


@dataclass(frozen=True)
class SnapshotEvent:
    at: dt.datetime
    extra: dict[str, Any]
    dag_id: str | None
    run_id: str | None


@dataclass(frozen=True)
class LastRebalance:
    """An account's last plan in the journal, who decided what, and its fills."""

    account_id: str
    dag_id: str
    run_id: str
    planned_at: dt.datetime
    orders: tuple[str, ...]
    decision: str | None = None
    decided_by: str | None = None
    fills: tuple[str, ...] = ()


def snapshot_events(
    may_read: Callable[[str], bool],
    asset_name: str = SNAPSHOT_ASSET,
    *,
    dag_id: str | None = None,
    run_id: str | None = None,
) -> list[SnapshotEvent]:
    """The asset's events (up to the given run, when one is named), oldest first, of DAGs
    ``may_read`` allows."""
    import sqlalchemy as sa
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    query = (
        sa.select(AssetEvent)
        .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        .where(AssetModel.name == asset_name)
        .order_by(AssetEvent.timestamp.desc())
    )
    with create_session() as session:
        if dag_id is not None and run_id is not None:
            anchor = session.scalars(
                query.where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run_id).limit(1)
            ).first()
            if anchor is None:
                return []
            query = query.where(AssetEvent.timestamp <= anchor.timestamp)
        found = [
            SnapshotEvent(e.timestamp, dict(e.extra or {}), e.source_dag_id, e.source_run_id)
            for e in session.scalars(query.limit(MAX_POINTS))
        ]
    return [e for e in reversed(found) if e.dag_id is None or may_read(e.dag_id)]


def newest_items(events: list[SnapshotEvent]) -> dict[str, tuple[dt.datetime, Any]]:
    """Account id -> (time, its item) of the newest snapshot file holding it (each file read
    once; a run may have snapshotted some accounts only)."""
    from ibkr_provider.workflows.portfolio_view import snapshot_items

    found: dict[str, tuple[dt.datetime, Any]] = {}
    wanted = {str(a) for e in events for a in (e.extra.get("accounts") or {})}
    for event in reversed(events):
        if wanted <= set(found):
            break
        if not wanted & set(event.extra.get("accounts") or {}) - set(found):
            continue
        snapshot = read_snapshot(event)
        for account_id, item in snapshot_items(snapshot or {}).items():
            found.setdefault(account_id, (event.at, item))
    return found


def read_snapshot(event: SnapshotEvent) -> dict[str, Any] | None:
    """The JSON file the event names (None when it names none or it is gone)."""
    from airflow.sdk import ObjectStoragePath

    for name in event.extra.get("files") or []:
        if str(name).endswith(".json"):
            try:
                data: dict[str, Any] = json.loads(ObjectStoragePath(str(name)).read_text())
            except (OSError, ValueError) as exc:
                log.warning("IBKR portfolio page: cannot read snapshot %s: %s", name, exc)
                return None
            return data
    return None


def last_rebalances(may_read: Callable[[str], bool], journal_conn_id: str) -> dict[str, LastRebalance]:
    """Account id -> its last plan in the journal (empty without a journal connection)."""
    import sqlalchemy as sa
    from airflow.models.connection import Connection

    from ibkr_provider.hooks.journal import journal_url
    from ibkr_provider.journal.store import TradeJournal

    try:
        conn = Connection.get_connection_from_secrets(journal_conn_id)
    except Exception:  # no journal: the page shows no plans
        return {}
    journal = TradeJournal(sa.create_engine(journal_url(conn)))
    try:
        plans = {row.account_id: row for row in journal.rows(kind="plan") if may_read(row.dag_id)}
        found = {}
        for account_id, plan in plans.items():
            rows = [row for row in journal.rows(run_id=plan.run_id) if row.account_id == account_id]
            decision = next((row for row in rows if row.kind == "decision"), None)
            found[account_id] = LastRebalance(
                account_id,
                plan.dag_id,
                plan.run_id,
                plan.recorded_at,
                tuple(str(o.get("label", "")) for o in plan.payload.get("orders", [])),
                decision=str(decision.payload.get("decision")) if decision else None,
                decided_by=decision.actor if decision else None,
                fills=tuple(
                    _fill_text(row.side, row.quantity, row.symbol, row.price)
                    for row in rows
                    if row.kind == "fill"
                ),
            )
    except sa.exc.SQLAlchemyError as exc:
        log.warning("IBKR portfolio page: cannot read the trade journal %s: %s", journal_conn_id, exc)
        return {}
    finally:
        journal.close()
    return found


def _fill_text(side: str | None, size: str | None, symbol: str | None, price: str | None) -> str:
    """``BUY 225 BND at 72.50``: the journal's exact strings, formatted for people."""
    from ibkr_provider.client.models.numbers import to_decimal
    from ibkr_provider.workflows.portfolio_view import money, quantity

    amount, at = to_decimal(size), to_decimal(price)
    shown = quantity(amount) if amount is not None else "?"
    return f"{side} {shown} {symbol} at {money(at)}"
