"""``TradingDayTimetable``: run on an exchange's trading days, not on cron's idea of them.

Cron cannot say "the first trading day of the month": ``0 10 1-7 * 1-5`` is cron's OR of
day-of-month and day-of-week, so it ran every weekday plus weekend days 1-7, and no cron line
knows exchange holidays (a "monthly" rebalance copied with ``dry_run`` false traded daily). This
timetable takes the trading days from ``exchange_calendars`` (the exchange's own holiday rules and
early closes; New York's XNYS by default) and runs at local times on:

- ``every="day"``: every trading day (a time after an early close, e.g. 14:15 on a 13:00 close
  day, is left out: the market is shut);
- ``every="week"``: the first trading day of each week (Monday, or Tuesday after a Monday
  holiday);
- ``every="month"``: the first trading day of each month.

Runs are points in time (no data interval), like Airflow's ``CronTriggerTimetable``, and follow
its ``catchup`` rule: with ``catchup=False`` an unpaused DAG runs the latest missed time at once.
For DAGs that place orders, a late start is refused by the DAG itself (``max_start_delay_minutes``
in the example DAGs). Register it with Airflow through the provider's plugin (Airflow serializes
custom timetables only when a plugin lists them).

Holidays the exchange announces at short notice (a national day of mourning) are not in any
rule; exchange_calendars adds them in a release, so keep it up to date.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from airflow.timetables.base import DagRunInfo, DataInterval, Timetable

if TYPE_CHECKING:
    from airflow.timetables.base import TimeRestriction
    from pendulum import DateTime

Every = Literal["day", "week", "month"]
_EVERY: tuple[Every, ...] = ("day", "week", "month")
#: How far ahead the calendar is built (exchange_calendars' default stops a year ahead).
_HORIZON_DAYS = 3 * 366


@functools.lru_cache(maxsize=8)
def _calendar(name: str, start_year: int, end_year: int) -> Any:
    """The exchange calendar for whole years (built once per process: importing pandas and
    building the calendar costs about 0.7 s of CPU)."""
    import exchange_calendars

    return exchange_calendars.get_calendar(name, start=f"{start_year}-01-01", end=f"{end_year}-12-31")


class TradingDayTimetable(Timetable):
    """See the module docstring.

    :param every: ``"day"``, ``"week"`` (first trading day of the week) or ``"month"`` (first
        trading day of the month).
    :param at: local times of day (``"HH:MM"``), one or more.
    :param calendar: an exchange_calendars name (``XNYS`` New York, ``XLON`` London, ...).
    :param timezone: the zone ``at`` is read in (the exchange's own, normally).
    """

    def __init__(
        self,
        *,
        every: Every = "day",
        at: str | Sequence[str] = "10:00",
        calendar: str = "XNYS",
        timezone: str = "America/New_York",
    ) -> None:
        if every not in _EVERY:
            raise ValueError(f"every must be one of {_EVERY}, not {every!r}")
        times = [at] if isinstance(at, str) else list(at)
        if not times:
            raise ValueError("at needs at least one time of day, e.g. '10:00'")
        self.every: Every = every
        self.at = tuple(sorted(dt.time.fromisoformat(t).isoformat(timespec="minutes") for t in times))
        self.calendar = calendar
        self.timezone = timezone
        self.description = self.summary

    @property
    def summary(self) -> str:
        day = {"day": "every", "week": "first of each week's", "month": "first of each month's"}[self.every]
        return f"{day} {self.calendar} trading day at {', '.join(self.at)} {self.timezone}"

    # ------------------------------------------------------------------ serialization
    def serialize(self) -> dict[str, Any]:
        return {
            "every": self.every,
            "at": list(self.at),
            "calendar": self.calendar,
            "timezone": self.timezone,
        }

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> Timetable:
        return cls(every=data["every"], at=data["at"], calendar=data["calendar"], timezone=data["timezone"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TradingDayTimetable) and self.serialize() == other.serialize()

    def __hash__(self) -> int:
        return hash((self.every, self.at, self.calendar, self.timezone))

    # ------------------------------------------------------------------ the run times
    def _sessions(self, start: dt.date, end: dt.date) -> Iterator[tuple[dt.date, dt.datetime, dt.datetime]]:
        """(day, open, close) of each chosen trading day from ``start`` to ``end`` (UTC times)."""
        cal = _calendar(self.calendar, start.year - 1, end.year + 1)
        first = max(start, cal.first_session.date())
        last = min(end, cal.last_session.date())
        if first > last:
            return
        previous: tuple[int, int] | None = None
        for session in cal.sessions_in_range(first.isoformat(), last.isoformat()):
            day = session.date()
            period = {
                "day": (day.toordinal(), 0),
                "week": day.isocalendar()[:2],
                "month": (day.year, day.month),
            }
            key = period[self.every]
            if key == previous:
                continue
            previous = key
            opens = cal.session_open(session).to_pydatetime()
            closes = cal.session_close(session).to_pydatetime()
            yield day, opens, closes

    def run_times(self, start: dt.datetime, end: dt.datetime) -> Iterator[DateTime]:
        """Every run time from ``start`` to ``end`` (inclusive, aware datetimes), in order."""
        import pendulum

        zone = pendulum.timezone(self.timezone)
        # A "first trading day of the week/month" before ``start`` can only be found from the
        # period's beginning: start the session scan a month early and filter by time.
        scan_from = start.date() - dt.timedelta(days=31 if self.every != "day" else 1)
        for day, opens, closes in self._sessions(scan_from, end.date() + dt.timedelta(days=1)):
            for text in self.at:
                naive = dt.datetime.combine(day, dt.time.fromisoformat(text))
                when = pendulum.instance(naive, tz=zone).in_timezone("UTC")
                if not opens <= when <= closes:
                    continue  # before the open or after an (early) close: the market is shut
                if start <= when <= end:
                    yield when

    def _next_at_or_after(self, instant: dt.datetime) -> DateTime | None:
        end = instant + dt.timedelta(days=_HORIZON_DAYS)
        return next(self.run_times(instant, end), None)

    def _latest_at_or_before(self, instant: dt.datetime) -> DateTime | None:
        window = dt.timedelta(days=40)
        found = list(self.run_times(instant - window, instant))
        return found[-1] if found else None

    # ------------------------------------------------------------------ Airflow's interface
    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        return DataInterval.exact(run_after)

    def next_dagrun_info(
        self, *, last_automated_data_interval: DataInterval | None, restriction: TimeRestriction
    ) -> DagRunInfo | None:
        import pendulum

        candidates: list[DateTime] = []
        if last_automated_data_interval is not None:
            after = last_automated_data_interval.end + dt.timedelta(seconds=1)
            if (following := self._next_at_or_after(after)) is not None:
                candidates.append(following)
        elif restriction.earliest is not None and (first := self._next_at_or_after(restriction.earliest)):
            candidates.append(first)
        if not restriction.catchup:
            # Like CronTriggerTimetable: the latest time already passed, at once, then onwards.
            now = pendulum.now("UTC")
            latest = self._latest_at_or_before(now) or self._next_at_or_after(now)
            if latest is not None and (restriction.earliest is None or latest >= restriction.earliest):
                candidates.append(latest)
        if (
            not candidates
            and restriction.earliest is None
            and (soonest := self._next_at_or_after(pendulum.now("UTC")))
        ):
            candidates.append(soonest)
        if not candidates:
            return None
        chosen = max(candidates)
        if restriction.latest is not None and chosen > restriction.latest:
            return None
        return DagRunInfo.exact(chosen)
