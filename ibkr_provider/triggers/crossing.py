"""A level crossing for the event watchers: once per crossing, never on a state that stays true.

Airflow's event scheduling runs a DAG on every event, so a watcher must not fire while a value
merely stays beyond its level (Airflow's docs warn of exactly that). The rule kept here: the
first value seen only arms (a value already beyond the level when watching starts is not a
crossing); an armed crossing fires once and disarms; the value moving back re-arms. The armed
state lives in Airflow 3.3's asset state store under ``state_key``, so a triggerer restart
neither fires a crossing again nor forgets that one re-armed it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from ibkr_provider.client.models.numbers import to_decimal

if TYPE_CHECKING:
    from airflow.sdk.execution_time.context import AssetStateStoreAccessors

#: ``above`` crosses at or over the level, ``below`` at or under it.
DIRECTIONS = ("above", "below")


def checked_level(level: str | float, direction: str) -> str:
    """``level`` as exact text, after the checks a DAG author needs (named fields, the fix)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: {direction!r} is not 'above' or 'below'")
    if to_decimal(level) is None:
        raise ValueError(f"level: {level!r} is not a number (write it as '300' or 300.5)")
    return str(level)


class LevelCrossing:
    """The armed state of one watched level."""

    def __init__(
        self, level: str, direction: str, state_key: str, store: AssetStateStoreAccessors | None
    ) -> None:
        self.level = to_decimal(level) or Decimal(0)
        self.direction = direction
        self.state_key = state_key
        self._store = store
        self.armed: bool | None = None

    async def load(self) -> None:
        """The armed state a previous triggerer left (None: no value seen yet)."""
        if self._store is not None:
            stored = await self._store.aget(self.state_key, None)
            self.armed = stored if isinstance(stored, bool) else None

    def _beyond(self, value: Decimal) -> bool:
        return value >= self.level if self.direction == "above" else value <= self.level

    async def _set(self, armed: bool) -> None:
        self.armed = armed
        if self._store is not None:
            await self._store.aset(self.state_key, armed)

    async def crossed(self, value: Decimal | None) -> bool:
        """Whether ``value`` is a new crossing (the armed state is updated and stored)."""
        if value is None:
            return False
        beyond = self._beyond(value)
        if self.armed is None:
            await self._set(not beyond)
            return False
        if self.armed == beyond:  # armed and beyond: a crossing; disarmed and back: re-armed
            await self._set(not beyond)
            return beyond
        return False
