"""Fail a task at once on what a retry cannot fix; leave the rest to Airflow's retries.

Airflow retries a failed task ``retries`` times, ``retry_delay`` apart. That helps with a
dropped connection or IBKR's nightly reset, and only wastes the user's time (and, for a
refused login, risks IBKR locking the account's API access) when the failure is final: a wrong
connection field, refused credentials, an unknown symbol, a refused order. The client says
which is which (:attr:`ibkr_provider.client.errors.IbkrError.permanent`); this module turns a
permanent error into Airflow's ``AirflowFailException`` (no retry), chained to the original
so its type and IBKR's text stay in the log, and lets transient errors propagate unchanged.

Use it around your own IBKR code in a ``@task`` the way the operators do::

    with fail_fast("rebalance plan"):
        client.account_summary(account)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ibkr_provider.client.errors import IbkrError

if TYPE_CHECKING:
    from airflow.sdk.exceptions import AirflowFailException


def task_failure(what: str, error: IbkrError) -> AirflowFailException:
    """The exception that fails the task without retries, worded as one line a person can act
    on: what failed, where to look, and why no retry was attempted."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(
        f"{what} failed: {type(error).__name__}: {str(error).rstrip('.')}. Check {error.hint}. "
        "Not retried: retrying cannot fix this."
    )


@contextmanager
def fail_fast(what: str) -> Iterator[None]:
    """Re-raise a permanent :class:`IbkrError` as ``AirflowFailException``; others unchanged."""
    try:
        yield
    except IbkrError as error:
        if error.permanent:
            raise task_failure(what, error) from error
        raise
