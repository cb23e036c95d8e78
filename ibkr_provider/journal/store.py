"""The journal's table, in any database SQLAlchemy reaches (SQLite for ``make demo`` and ``make
up``, PostgreSQL for ``make cluster`` and docker compose).

The table is created when missing. :meth:`TradeJournal.append` writes a batch in one transaction
(a crash leaves all of it or none) and skips an entry whose ``event_key`` is already there, with
the database's own ``ON CONFLICT DO NOTHING`` where the dialect has one (SQLite, PostgreSQL) and a
savepoint per row elsewhere: a retried task writes no second row for the same event, and two
tasks racing on one event write one. Times are UTC.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ibkr_provider.journal.entries import JournalEntry

TABLE_NAME = "ibkr_trade_journal"

_metadata = sa.MetaData()
TABLE = sa.Table(
    TABLE_NAME,
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_key", sa.String(64), nullable=False, unique=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("dag_id", sa.String(250), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("task_id", sa.String(250), nullable=False),
    sa.Column("map_index", sa.Integer, nullable=False),
    sa.Column("account_id", sa.String(32), nullable=False),
    sa.Column("plan_hash", sa.String(64)),
    sa.Column("actor", sa.String(250)),
    sa.Column("coid", sa.String(64)),
    sa.Column("order_id", sa.String(64)),
    sa.Column("symbol", sa.String(64)),
    sa.Column("side", sa.String(8)),
    sa.Column("quantity", sa.String(64)),
    sa.Column("price", sa.String(64)),
    sa.Column("commission", sa.String(64)),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Index("ix_ibkr_trade_journal_run", "dag_id", "run_id"),
    sa.Index("ix_ibkr_trade_journal_recorded_at", "recorded_at"),
)


@dataclass(frozen=True)
class JournalRow:
    """A row as read back (``payload`` decoded)."""

    id: int
    recorded_at: dt.datetime
    kind: str
    dag_id: str
    run_id: str
    account_id: str
    actor: str | None
    coid: str | None
    order_id: str | None
    symbol: str | None
    side: str | None
    quantity: str | None
    price: str | None
    commission: str | None
    plan_hash: str | None
    payload: dict[str, Any]


#: Dialects whose INSERT has ``ON CONFLICT DO NOTHING`` (each dialect's module is imported when a
#: journal first writes to it: importing PostgreSQL's costs 50 ms, paid before by every importer).
_DO_NOTHING_DIALECTS = frozenset({"sqlite", "postgresql"})


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class TradeJournal:
    """Appends entries to, and reads them from, the journal table of ``engine``'s database."""

    def __init__(self, engine: Engine, *, clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self.engine = engine
        self._clock = clock
        _metadata.create_all(engine, checkfirst=True)

    @classmethod
    def at(cls, url: str) -> TradeJournal:
        """The journal in the database at ``url`` (a SQLAlchemy URL)."""
        return cls(sa.create_engine(url, future=True))

    def close(self) -> None:
        self.engine.dispose()

    def append(self, entries: Iterable[JournalEntry]) -> int:
        """Write ``entries`` in one transaction; returns how many rows were new."""
        now = self._clock()
        rows = [{**entry.row(), "recorded_at": now} for entry in entries]
        if not rows:
            return 0
        with self.engine.begin() as conn:
            return self._insert_new(conn, rows)

    def _insert_new(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
        if conn.dialect.name in _DO_NOTHING_DIALECTS:
            upsert = importlib.import_module(f"sqlalchemy.dialects.{conn.dialect.name}").insert
            written = 0
            for row in rows:
                statement = upsert(TABLE).values(**row).on_conflict_do_nothing(index_elements=["event_key"])
                written += conn.execute(statement).rowcount or 0
            return written
        written = 0
        for row in rows:  # other dialects: a savepoint per row, a duplicate key rolled back alone
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(TABLE).values(**row))
                written += 1
            except IntegrityError:
                continue
        return written

    def counts(self, *, dag_id: str, run_id: str) -> dict[str, int]:
        """How many rows of each kind one DAG run wrote."""
        query = (
            sa.select(TABLE.c.kind, sa.func.count())
            .where(TABLE.c.dag_id == dag_id, TABLE.c.run_id == run_id)
            .group_by(TABLE.c.kind)
        )
        with self.engine.connect() as conn:
            return {str(kind): int(n) for kind, n in conn.execute(query).all()}

    def known(self, event_keys: Iterable[str]) -> set[str]:
        """Which of ``event_keys`` are journaled already."""
        wanted = list(set(event_keys))
        if not wanted:
            return set()
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(TABLE.c.event_key).where(TABLE.c.event_key.in_(wanted))).scalars()
            return {str(key) for key in found}

    def rows(self, *, run_id: str | None = None, kind: str | None = None) -> list[JournalRow]:
        """The rows in the order they were written (of one run, of one kind)."""
        query = sa.select(TABLE).order_by(TABLE.c.id)
        if run_id is not None:
            query = query.where(TABLE.c.run_id == run_id)
        if kind is not None:
            query = query.where(TABLE.c.kind == kind)
        with self.engine.connect() as conn:
            found = conn.execute(query).mappings().all()
        return [
            JournalRow(
                id=row["id"],
                recorded_at=row["recorded_at"],
                kind=row["kind"],
                dag_id=row["dag_id"],
                run_id=row["run_id"],
                account_id=row["account_id"],
                actor=row["actor"],
                coid=row["coid"],
                order_id=row["order_id"],
                symbol=row["symbol"],
                side=row["side"],
                quantity=row["quantity"],
                price=row["price"],
                commission=row["commission"],
                plan_hash=row["plan_hash"],
                payload=json.loads(row["payload"]),
            )
            for row in found
        ]
