"""The task helpers of DAGs that trade: the required account, and a late start that skips."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from ibkr_provider.client import IbkrValidationError
from ibkr_provider.tasks import account_for_orders, skip_if_started_late


@pytest.mark.parametrize("given", [None, "", "  ", "DU1/../U3"])
def test_a_dag_that_places_orders_needs_its_account_named(given: object) -> None:
    with pytest.raises(IbkrValidationError) as excinfo:
        account_for_orders({"account_id": given})
    assert excinfo.value.field == "account_id"
    assert account_for_orders({"account_id": " DU2345678 "}) == "DU2345678"


def _context(run_type: str, late_minutes: float) -> dict[str, object]:
    due = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=late_minutes)
    return {"dag_run": SimpleNamespace(run_type=run_type, run_after=due)}


def test_a_scheduled_run_that_starts_late_skips_instead_of_trading() -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(
        AirflowSkipException, match=r"started 1440 minutes late \(max_start_delay_minutes 60\)"
    ):
        skip_if_started_late(_context("scheduled", 24 * 60), 60)  # type: ignore[arg-type]
    skip_if_started_late(_context("scheduled", 5), 60)  # type: ignore[arg-type]
    skip_if_started_late(_context("manual", 24 * 60), 60)  # type: ignore[arg-type]
    with pytest.raises(IbkrValidationError):
        skip_if_started_late(_context("scheduled", 5), "nan")  # type: ignore[arg-type]
