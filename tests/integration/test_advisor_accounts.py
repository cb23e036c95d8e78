"""An advisor's login with more sub-accounts than IBKR lists at once (issue 26), over HTTP: the
sub-accounts are read page by page from ``/portfolio/subaccounts2``, a page that fails or ends
short of the announced total is an error, and the snapshot operator writes every account's
figures as it reads them, one complete file."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ibkr_sandbox.process import RunningSandbox, start_sandbox
from ibkr_sandbox.seed import ADVISOR_CREDENTIAL

from ibkr_provider.client import IbkrClient, IbkrClientConfig
from ibkr_provider.client.errors import IbkrResponseError

#: In `make test`, not the edit loop: a sandbox of its own and hundreds of accounts.
pytestmark = pytest.mark.slow

SUBACCOUNTS = 230  # three pages of 100


@pytest.fixture(scope="module")
def advisor_sandbox(sandbox_state: Callable[[str], Path]) -> Iterator[RunningSandbox]:
    running = start_sandbox(
        sandbox_state("advisor"),
        "--advisor-subaccounts",
        str(SUBACCOUNTS),
        "--price-tick-seconds",
        "0",
        "--rate-limit",
        "1000",
    )
    try:
        yield running
    finally:
        running.stop()


def advisor_client(sandbox: RunningSandbox) -> IbkrClient:
    values = sandbox.client_config_values(
        credential=ADVISOR_CREDENTIAL, session_cache="memory", rate_limit=500
    )
    return IbkrClient(IbkrClientConfig.from_mapping(values))


def test_every_subaccount_is_read_page_by_page(advisor_sandbox: RunningSandbox) -> None:
    advisor_sandbox.reset()
    with advisor_client(advisor_sandbox) as client:
        assert len(client.list_accounts()) == 100  # IBKR lists 100 at once
        accounts = client.portfolio.all_subaccounts()
    assert [a.account_id for a in accounts] == [f"DU9{n:06d}" for n in range(1, SUBACCOUNTS + 1)]
    assert advisor_sandbox.stats()["paths"]["GET /v1/api/portfolio/subaccounts2"] == 3


@pytest.mark.parametrize("shape", ["missing_fields", "truncated"])
def test_a_failed_subaccount_page_is_an_error_not_a_shorter_list(
    advisor_sandbox: RunningSandbox, shape: str
) -> None:
    advisor_sandbox.reset()
    with advisor_client(advisor_sandbox) as client:
        client.list_accounts()
        advisor_sandbox.inject_fault(
            "/v1/api/portfolio/subaccounts2", "malformed", count=10, method="GET", body=shape
        )
        with pytest.raises(IbkrResponseError) as failed:
            client.portfolio.all_subaccounts()
    assert "/portfolio/subaccounts2" in str(failed.value)


def test_the_snapshot_of_every_subaccount_is_one_complete_file(
    advisor_sandbox: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ibkr_provider.operators.portfolio import IbkrPortfolioSnapshotOperator

    advisor_sandbox.reset()
    conn = advisor_sandbox.connection_json(
        credential=ADVISOR_CREDENTIAL, rate_limit=500, session_cache="memory"
    )
    monkeypatch.setenv("AIRFLOW_CONN_IBKR_DEFAULT", conn)
    out = tmp_path / "snapshots"
    result = IbkrPortfolioSnapshotOperator(task_id="snapshot", output_path=str(out)).execute(
        context={"run_id": "manual__advisor"}  # type: ignore[arg-type]
    )
    assert len(result["accounts"]) == SUBACCOUNTS
    snapshot = json.loads((out / "portfolio_snapshot_manual__advisor.json").read_text())
    assert len(snapshot["accounts"]) == SUBACCOUNTS
    with (out / "positions_manual__advisor.csv").open() as rows:
        assert sum(1 for _ in csv.reader(rows)) == 1 + 3 * SUBACCOUNTS  # header + three each
    assert sorted(p.name for p in out.iterdir()) == [
        "portfolio_snapshot_manual__advisor.json",
        "positions_manual__advisor.csv",
    ]
