"""What the journal records: one :class:`JournalEntry` per event, identified by what it is about.

An entry's ``event_key`` is a hash of the run, the task and what the event is (its kind and
subject: the plan, a decision, an order's cOID, a status, a fill's execution id), never of when
it was written: a retried task that journals the same event again produces the same key, and the
store writes it once. Amounts are exact strings (``Decimal`` text), as in XCom.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class EntryKind(str, enum.Enum):
    PLAN = "plan"
    DECISION = "decision"
    ORDER = "order"
    STATUS = "status"
    FILL = "fill"


@dataclass(frozen=True)
class RunRef:
    """Which Airflow task instance an event belongs to."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1


@dataclass(frozen=True)
class JournalEntry:
    """One event. ``subject`` makes it unique within its run and kind (``"plan"``, the approver's
    decision id, an order's cOID, ``"<cOID>:<status>"``, a fill's execution id)."""

    kind: EntryKind
    run: RunRef
    subject: str
    account_id: str
    plan_hash: str | None = None
    actor: str | None = None
    coid: str | None = None
    order_id: str | None = None
    symbol: str | None = None
    side: str | None = None
    quantity: str | None = None
    price: str | None = None
    commission: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    #: What the event is unique within instead of the run: ``"execution"`` for a fill an event
    #: trigger reported (the same execution delivered to two runs is one row).
    scope: str | None = None

    @property
    def event_key(self) -> str:
        """Stable across retries: the run (or ``scope``), the kind and the subject (not the
        task, so the same order journaled by the placing task and by a later fill watcher is one
        row per kind)."""
        parts = (self.run.dag_id, self.scope or self.run.run_id, self.kind.value, self.subject)
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def row(self) -> dict[str, Any]:
        """The entry as the table's columns (see :mod:`ibkr_provider.journal.store`)."""
        return {
            "event_key": self.event_key,
            "kind": self.kind.value,
            "dag_id": self.run.dag_id,
            "run_id": self.run.run_id,
            "task_id": self.run.task_id,
            "map_index": self.run.map_index,
            "account_id": self.account_id,
            "plan_hash": self.plan_hash,
            "actor": self.actor,
            "coid": self.coid,
            "order_id": self.order_id,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": self.quantity,
            "price": self.price,
            "commission": self.commission,
            "payload": json.dumps(dict(self.payload), sort_keys=True, default=str),
        }
