"""Airflow 3.3's asset state store accessor, in memory (the triggerer injects the real one into
every ``BaseEventTrigger`` it runs as a watcher)."""

from __future__ import annotations

from typing import Any


class FakeStateStore:
    """``aget``/``aset`` over a dict; a test gives one instance to a watcher and to its restart."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = value
