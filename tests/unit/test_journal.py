"""The trade journal writes each event once, a batch whole or not at all, and reads back exact
amounts (SQLite files; the PostgreSQL path is the same SQL with its own ON CONFLICT)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from ibkr_provider.journal import store
from ibkr_provider.journal.entries import EntryKind, JournalEntry, RunRef
from ibkr_provider.journal.store import TradeJournal

RUN = RunRef("ibkr_rebalance", "manual__2026-12-04", "place_order", 0)


def _entries() -> list[JournalEntry]:
    return [
        JournalEntry(EntryKind.PLAN, RUN, "plan", "DU2345678", plan_hash="ab" * 32, payload={"orders": 2}),
        JournalEntry(
            EntryKind.ORDER,
            RUN,
            "af-1",
            "DU2345678",
            coid="af-1",
            order_id="101",
            symbol="VTI",
            side="BUY",
            quantity=str(Decimal("0.125")),
            price="290.07",
        ),
    ]


def _journal(tmp_path: Path) -> TradeJournal:
    return TradeJournal.at(f"sqlite:///{tmp_path / 'journal.db'}")


def test_an_event_is_written_once_however_often_it_is_journaled(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    assert journal.append(_entries()) == 2
    assert journal.append(_entries()) == 0  # a retried task
    other = _journal(tmp_path)  # another process, its own engine
    assert other.append(_entries()[1:]) == 0
    rows = journal.rows(run_id=RUN.run_id)
    assert [r.kind for r in rows] == ["plan", "order"]
    assert rows[1].quantity == "0.125" and rows[1].price == "290.07" and rows[0].payload == {"orders": 2}
    journal.close()
    other.close()


def test_a_batch_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    broken = JournalEntry(EntryKind.FILL, RUN, "exec-1", None)  # type: ignore[arg-type]
    with pytest.raises(sa.exc.IntegrityError):
        journal.append([*_entries(), broken])
    assert journal.rows() == []
    journal.close()


def test_without_on_conflict_a_savepoint_skips_the_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "_DO_NOTHING_DIALECTS", frozenset())
    journal = _journal(tmp_path)
    assert journal.append(_entries()) == 2
    assert journal.append([*_entries(), JournalEntry(EntryKind.STATUS, RUN, "af-1:Filled", "DU2345678")]) == 1
    assert len(journal.rows()) == 3
    journal.close()


def test_rows_carry_their_utc_time(tmp_path: Path) -> None:
    moment = dt.datetime(2026, 12, 4, 15, 30, tzinfo=dt.timezone.utc)
    journal = TradeJournal(sa.create_engine(f"sqlite:///{tmp_path / 'j.db'}"), clock=lambda: moment)
    journal.append(_entries()[:1])
    (row,) = journal.rows(kind="plan")
    assert row.recorded_at.replace(tzinfo=dt.timezone.utc) == moment
    journal.close()
