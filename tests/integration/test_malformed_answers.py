"""IBKR answering in a shape it should not (issue 26), over HTTP: for each endpoint a task reads
and each malformed shape the sandbox can give (a truncated body, swapped types, emptied objects,
an HTML error page, IBKR's error object in a 200, an 8 MB body of nothing), the client raises a
typed :class:`IbkrError` naming the endpoint: never ``KeyError``, ``TypeError``, a hang or a
result silently made of less. A snapshot with a malformed page writes no file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ibkr_sandbox.malformed import SHAPES
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrClient
from ibkr_provider.client.errors import IbkrError
from ibkr_provider.client.session.stores.memory import MemorySessionStore

#: In `make test`, not the edit loop: 36 sessions, one per endpoint and shape.
pytestmark = pytest.mark.slow

#: endpoint path (as the sandbox matches it) -> what a task calls to read it
READS: dict[str, Callable[[IbkrClient], Any]] = {
    "/v1/api/portfolio/accounts": lambda c: c.list_accounts(refresh=True),
    "/v1/api/portfolio/DU1234567/summary": lambda c: c.account_summary("DU1234567"),
    "/v1/api/portfolio/DU1234567/ledger": lambda c: c.account_ledger("DU1234567"),
    "/v1/api/portfolio/DU1234567/positions/1": lambda c: c.all_positions("DU1234567"),
    "/v1/api/iserver/account/trades": lambda c: c.iserver.executions(days=1),
    "/v1/api/iserver/account/pnl/partitioned": lambda c: c.pnl(),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("path", sorted(READS))
def test_a_malformed_answer_is_a_typed_error_naming_its_endpoint(
    fresh_sandbox: RunningSandbox, make_client: Callable[..., IbkrClient], path: str, shape: str
) -> None:
    MemorySessionStore.clear()  # a fresh pacing state: no wait behind earlier cases
    fresh_sandbox.configure(endpoint_limits=False)
    client = make_client(fresh_sandbox, max_retries=1, max_retry_seconds=5)
    client.connect()
    if path != "/v1/api/portfolio/accounts":
        client.list_accounts()  # the pre-flight, answered truly
    # every attempt gets the malformed shape (a retry may fix a transient one: not this)
    fresh_sandbox.inject_fault(path, "malformed", count=10, method="GET", body=shape)
    with pytest.raises(IbkrError) as raised:
        READS[path](client)
    error = raised.value
    named = path.replace("/v1/api", "")
    assert named in str(error) or (error.endpoint or "").endswith(named), (shape, str(error))


def test_a_snapshot_with_a_malformed_page_writes_no_file(
    fresh_sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DU1234567 has three position pages; its second comes back cut off: the task fails and
    the output directory stays empty (a shorter snapshot is never written)."""
    from ibkr_provider.operators.portfolio import IbkrPortfolioSnapshotOperator

    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", fresh_sandbox.connection_json())
    fresh_sandbox.inject_fault(
        "/v1/api/portfolio/DU1234567/positions/1", "malformed", count=20, method="GET", body="truncated"
    )
    out = tmp_path / "snapshots"
    operator = IbkrPortfolioSnapshotOperator(
        task_id="snapshot", account_ids=["DU1234567"], output_path=str(out)
    )
    with pytest.raises(Exception) as failed:
        operator.execute(context={"run_id": "manual__1"})  # type: ignore[arg-type]
    assert "positions/1" in str(failed.value) or "positions/1" in str(failed.value.__cause__)
    assert not out.exists() or list(out.iterdir()) == []
