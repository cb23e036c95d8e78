"""``IbkrFlexReportEventTrigger``: an Asset event when a Flex query has a report for a new period.

Flex has no stream, so the watcher asks: every ``poll_interval`` seconds (default an hour) one
SendRequest and the GetStatement polls the Flex Web Service asks for (1019 "generation in
progress" polled, 1018 "too many requests" backed off: :class:`~ibkr_provider.flex.client.
FlexClient`, the same pacing as the Flex operator). Every SendRequest answers a new reference
code, so the reference is not what makes a report new: its period is (the statements'
``fromDate``-``toDate``; a "last business day" query has a new one each business day). The last
period fired is kept in Airflow 3.3's asset state store (key ``flex_period:<query id>``), stored
``confirm_seconds`` after the event was handed to Airflow (which writes trigger events to its
database asynchronously), so a triggerer restart neither repeats a report nor loses one.

A Flex error (an expired token, a query IBKR refuses) is logged as an error and asked again at
the next poll, with a client built afresh from the connection: a token renewed in the
connection is picked up without restarting the triggerer. The kwargs carry no secret.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from ibkr_provider.client.errors import IbkrError
from ibkr_provider.hooks.names import DEFAULT_FLEX_CONN_ID

if TYPE_CHECKING:
    from ibkr_provider.flex.report import FlexReport


def report_summary(query_id: str, report: FlexReport) -> dict[str, Any]:
    """What a downstream DAG needs to fetch and check the report: its period, accounts and the
    row count of each section (the payload of the event)."""
    statements = report.statements()
    return {
        "query_id": query_id,
        "reference_code": report.reference_code,
        "from_date": min((s.get("fromDate", "") for s in statements), default=""),
        "to_date": max((s.get("toDate", "") for s in statements), default=""),
        "when_generated": max((s.get("whenGenerated", "") for s in statements), default=""),
        "accounts": sorted({s.get("accountId", "") for s in statements}),
        "rows": {section: len(rows) for section, rows in sorted(report.sections.items())},
    }


class IbkrFlexReportEventTrigger(BaseEventTrigger):
    """One event per new report period of Flex query ``query_id``.

    The event's payload: ``query_id``, ``reference_code``, ``from_date``, ``to_date``
    (``YYYYMMDD``), ``when_generated``, ``accounts`` and ``rows`` (section -> row count).
    """

    def __init__(
        self,
        *,
        query_id: str,
        ibkr_flex_conn_id: str = DEFAULT_FLEX_CONN_ID,
        poll_interval: float = 3600.0,
        confirm_seconds: float = 5.0,
    ) -> None:
        super().__init__()
        if not str(query_id).strip().isdigit():
            raise ValueError(f"query_id: {query_id!r} is not a Flex query id (digits, from Client Portal)")
        self.query_id = str(query_id).strip()
        self.ibkr_flex_conn_id = ibkr_flex_conn_id
        self.poll_interval = poll_interval
        self.confirm_seconds = confirm_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "query_id": self.query_id,
                "ibkr_flex_conn_id": self.ibkr_flex_conn_id,
                "poll_interval": self.poll_interval,
                "confirm_seconds": self.confirm_seconds,
            },
        )

    @property
    def _state_key(self) -> str:
        return f"flex_period:{self.query_id}"

    async def _fetch(self) -> FlexReport:
        from airflow.sdk.log import amask_secret

        from ibkr_provider.hooks.flex import IbkrFlexHook

        secrets: list[str] = []
        hook = await asyncio.to_thread(IbkrFlexHook, ibkr_flex_conn_id=self.ibkr_flex_conn_id)
        try:
            client = await hook.aget_conn(secrets.append)
        finally:
            for secret in secrets:
                await amask_secret(secret)
        try:
            return await asyncio.to_thread(client.fetch, self.query_id)
        finally:
            await asyncio.to_thread(client.close)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        store = self.asset_state_store
        last = await store.aget(self._state_key, None) if store is not None else None
        while True:
            try:
                report = await self._fetch()
            except IbkrError as exc:
                self.log.error(
                    "Flex query %s failed (asking again in %g s): %s", self.query_id, self.poll_interval, exc
                )
            else:
                summary = report_summary(self.query_id, report)
                period = f"{summary['from_date']}-{summary['to_date']}"
                if period != last:
                    self.log.info(
                        "new Flex report for query %s: %s (%s)", self.query_id, period, summary["rows"]
                    )
                    yield TriggerEvent(summary)
                    await asyncio.sleep(self.confirm_seconds)  # Airflow stores the event meanwhile
                    last = period
                    if store is not None:
                        await store.aset(self._state_key, period)
            await asyncio.sleep(self.poll_interval)
