"""Helpers for the tasks of DAGs that trade: the account they act on, and refusing a late start.

Read-only DAGs may fall back to the connection's ``account_id``; a DAG that places orders never
does (a connection's "first account" is not a decision a person made), so it needs the account
named in its params. A scheduled run that starts long after its time (a DAG unpaused late runs
its latest missed time at once; a scheduler that was down) skips instead of trading on a
morning's plan in the afternoon.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ibkr_provider.client import fields
from ibkr_provider.client.errors import IbkrValidationError

if TYPE_CHECKING:
    from airflow.sdk import Context


def account_for_orders(params: Mapping[str, Any]) -> str:
    """The ``account_id`` param, required and checked (letters then digits)."""
    given = params.get("account_id")
    if given is None or not str(given).strip():
        raise IbkrValidationError(
            "account_id",
            "this DAG places orders, so it needs the account named: set the DAG param account_id (it "
            "never falls back to the connection's account)",
        )
    return fields.account_id(given)


def skip_if_started_late(context: Context, max_delay_minutes: Any) -> None:
    """Skip a scheduled run that starts more than ``max_delay_minutes`` after its time (manual
    runs start when a person asks, so they are never late)."""
    from airflow.sdk.exceptions import AirflowSkipException

    run = context["dag_run"]
    if str(getattr(run, "run_type", "")).lower().split(".")[-1] != "scheduled":
        return
    limit = fields.number("max_start_delay_minutes", max_delay_minutes, positive=True)
    due = run.run_after
    if due is None or limit is None:
        return
    late = dt.datetime.now(dt.timezone.utc) - due
    if late > dt.timedelta(minutes=limit):
        raise AirflowSkipException(
            f"this scheduled run was due at {due.isoformat()} and started {late.total_seconds() / 60:.0f} "
            f"minutes late (max_start_delay_minutes {limit:g}): skipping instead of trading late"
        )


def account_for_this_run(context: Context) -> str:
    """What a task of a DAG that places orders does first: skip a scheduled run that started too
    late (param ``max_start_delay_minutes``), then the account named in the params."""
    params = context["params"]
    skip_if_started_late(context, params["max_start_delay_minutes"])
    return account_for_orders(params)
