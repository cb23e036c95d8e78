"""``IbkrFlexReportOperator``: export a Flex query as the raw report plus CSVs of its sections."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from airflow.sdk import Asset, BaseOperator, Context

from ibkr_provider.client.errors import IbkrValidationError
from ibkr_provider.failures import fail_fast
from ibkr_provider.hooks.flex import IbkrFlexHook
from ibkr_provider.operators.storage import storage_path, write_whole

DEFAULT_SECTIONS = ("Trades", "OpenPositions", "CashReport")


def _as_date(name: str, value: Any) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    for fmt, size in (("%Y-%m-%d", 10), ("%Y%m%d", 8)):
        try:
            return datetime.strptime(text[:size], fmt).date()
        except ValueError:
            continue
    raise IbkrValidationError(name, f"{value!r} is not a date (YYYY-MM-DD)")


class IbkrFlexReportOperator(BaseOperator):
    """Run a Flex query through the Flex Web Service and save the report.

    Saves the raw report as IBKR sent it, and one CSV per chosen section, to ``output_path``
    (a local directory or any ObjectStoragePath URL). ``use_data_interval=True`` asks IBKR for
    the run's data interval (``fd``/``td``, at most 365 days); ``from_date``/``to_date`` set it
    explicitly. Flex codes are handled as documented in :mod:`ibkr_provider.flex.codes`
    (1019 polls, 1018 backs off, an expired or invalid token fails with a clear message).

    Example::

        IbkrFlexReportOperator(
            task_id="export_flex",
            query_id="123456",
            output_path="/data/ibkr/flex/{{ ds }}",
            use_data_interval=True,
        )

    :return: ``{"reference_code", "raw", "csv": {section: path}, "rows": {section: count}}``.
    """

    template_fields: Sequence[str] = ("ibkr_flex_conn_id", "query_id", "output_path", "from_date", "to_date")
    ui_color = "#e3d7f2"

    def __init__(
        self,
        *,
        output_path: str,
        query_id: str | None = None,
        sections: Sequence[str] = DEFAULT_SECTIONS,
        use_data_interval: bool = False,
        from_date: str | date | None = None,
        to_date: str | date | None = None,
        ibkr_flex_conn_id: str = IbkrFlexHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.query_id = query_id
        self.output_path = output_path
        self.sections = tuple(sections)
        self.use_data_interval = use_data_interval
        self.from_date = from_date
        self.to_date = to_date
        self.ibkr_flex_conn_id = ibkr_flex_conn_id

    def _dates(self, context: Context) -> tuple[date | None, date | None]:
        start, end = _as_date("from_date", self.from_date), _as_date("to_date", self.to_date)
        if self.use_data_interval and start is None and end is None:
            interval_start, interval_end = (
                context.get("data_interval_start"),
                context.get("data_interval_end"),
            )
            if interval_start is not None and interval_end is not None:
                start, end = interval_start.date(), interval_end.date()
        if (start is None) != (end is None):
            raise IbkrValidationError("from_date", "give both from_date and to_date, or neither")
        if start and end and (end < start or (end - start).days > 365):
            raise IbkrValidationError(
                "to_date", "the range must run forwards and span at most 365 days (IBKR's limit)"
            )
        return start, end

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_fast(f"IBKR Flex report ({self.task_id})"):
            hook = IbkrFlexHook(ibkr_flex_conn_id=self.ibkr_flex_conn_id)
            query_id = str(self.query_id or hook.default_query_id() or "").strip()
            if not query_id.isdigit():
                raise IbkrValidationError(
                    "query_id",
                    f"{self.query_id!r} is not a Flex query id (digits); pass query_id or set the "
                    "ibkr_flex connection's query_id",
                )
            start, end = self._dates(context)
            with hook.get_conn() as flex:
                report = flex.fetch(query_id, from_date=start, to_date=end)
        folder = storage_path(str(self.output_path))
        folder.mkdir(parents=True, exist_ok=True)
        tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{query_id}_{context['run_id']}")
        raw = folder / f"flex_{tag}.xml"
        write_whole(raw, report.content)
        csv_paths: dict[str, str] = {}
        counts: dict[str, int] = {}
        for section in self.sections:
            rows = report.rows(section)
            counts[section] = len(rows)
            columns = sorted({key for row in rows for key in row}, key=lambda k: (k != "accountId", k))
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
            target = folder / f"flex_{tag}_{section}.csv"
            write_whole(target, buffer.getvalue())
            csv_paths[section] = str(target)
        self.log.info("Flex report %s after %d poll(s): %s", report.reference_code, report.polls, counts)
        result: dict[str, Any] = {
            "reference_code": report.reference_code,
            "raw": str(raw),
            "csv": csv_paths,
            "rows": counts,
        }
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra = dict(result)
        return result
