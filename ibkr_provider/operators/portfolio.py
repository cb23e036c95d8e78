"""``IbkrPortfolioSnapshotOperator``: every account's summary, ledger and all positions."""

from __future__ import annotations

import contextlib
import csv
import json
import re
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Asset, BaseOperator, Context

from ibkr_provider.failures import fail_fast
from ibkr_provider.hooks.ibkr import IbkrHook
from ibkr_provider.operators.storage import storage_path, whole_file


class IbkrPortfolioSnapshotOperator(BaseOperator):
    """Snapshot IBKR accounts: summary, ledger and every position page.

    Positions are read page by page until IBKR returns a short page; a failed page fails the
    task, so a snapshot is never silently short. With ``output_path`` the snapshot is written as
    JSON (IBKR's payloads, unchanged) and CSV (one row per position) to any
    ``ObjectStoragePath`` location (local, S3, GCS, ...). Every ``Asset`` in ``outlets`` gets an
    event whose extra carries the file paths and headline figures.

    Example::

        IbkrPortfolioSnapshotOperator(
            task_id="snapshot",
            account_ids=["U1234567"],                      # default: every account
            output_path="s3://my-bucket/ibkr/{{ ds }}",     # or a local directory
            outlets=[Asset("ibkr://portfolio/snapshot")],
        )

    :param ibkr_conn_id: the ``ibkr`` connection.
    :param account_ids: accounts to snapshot (templated); empty or None means every account.
    :param output_path: directory or bucket prefix for the files (templated); None writes nothing.
    :param formats: any of ``json`` and ``csv``.
    :return: ``{"accounts": {id: figures}, "files": [paths]}`` (small, for XCom).
    """

    template_fields: Sequence[str] = ("ibkr_conn_id", "account_ids", "output_path")
    template_fields_renderers = {"account_ids": "json"}
    ui_color = "#cfe3f7"

    def __init__(
        self,
        *,
        ibkr_conn_id: str = IbkrHook.default_conn_name,
        account_ids: Sequence[str] | str | None = None,
        output_path: str | None = None,
        formats: Sequence[str] = ("json", "csv"),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        unknown = set(formats) - {"json", "csv"}
        if unknown:
            raise ValueError(f"formats: {sorted(unknown)} not supported; use 'json' and/or 'csv'")
        self.ibkr_conn_id = ibkr_conn_id
        self.account_ids = account_ids
        self.output_path = output_path
        self.formats = tuple(formats)

    def _wanted(self) -> list[str]:
        if not self.account_ids:
            return []
        if isinstance(self.account_ids, str):
            return [a for a in re.split(r"[,\s]+", self.account_ids) if a]
        return [str(a) for a in self.account_ids]

    def execute(self, context: Context) -> dict[str, Any]:
        with (
            fail_fast(f"IBKR portfolio snapshot ({self.task_id})"),
            IbkrHook(ibkr_conn_id=self.ibkr_conn_id) as hook,
            contextlib.ExitStack() as outputs,
        ):
            figures, files = self._snapshot(hook.get_conn(), context, outputs)
        if files:
            self.log.info("Snapshot written to %s", ", ".join(files))
        event_extra: dict[str, Any] = {"files": files, "accounts": figures}
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra = event_extra
        return {"accounts": figures, "files": files}

    def _snapshot(
        self, client: Any, context: Context, outputs: contextlib.ExitStack
    ) -> tuple[dict[str, Any], list[str]]:
        """Each account fetched, logged and written as it comes: an advisor's thousand accounts
        never sit in memory together, and the files appear (whole) only when every account's
        every page was read."""
        from ibkr_provider.workflows.portfolio_view import money
        from ibkr_provider.workflows.snapshot import POSITION_COLUMNS, position_rows, snapshot_accounts

        json_out = csv_out = None
        files: list[str] = []
        if self.output_path:
            folder = storage_path(self.output_path)
            folder.mkdir(parents=True, exist_ok=True)
            run_tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(context["run_id"]))
            if "json" in self.formats:
                target = folder / f"portfolio_snapshot_{run_tag}.json"
                json_out = outputs.enter_context(whole_file(target))
                json_out.write('{"accounts": [')
                files.append(str(target))
            if "csv" in self.formats:
                target = folder / f"positions_{run_tag}.csv"
                csv_out = csv.writer(outputs.enter_context(whole_file(target)))
                csv_out.writerow(POSITION_COLUMNS)
                files.append(str(target))
        figures: dict[str, Any] = {}
        for snap in snapshot_accounts(client, self._wanted()):
            if json_out is not None:
                json_out.write(("," if figures else "") + "\n" + json.dumps(snap.as_json()))
            if csv_out is not None:
                csv_out.writerows(position_rows(snap))
            figures[snap.account.account_id] = snap.figures()
            self.log.info(
                "%s: net liquidation %s, %d positions",
                snap.account.account_id,
                money(snap.summary.net_liquidation, snap.account.currency or ""),
                len(snap.positions),
            )
        if json_out is not None:
            json_out.write("\n]}\n")
        return figures, files
