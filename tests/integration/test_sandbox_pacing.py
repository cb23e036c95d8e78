"""The sandbox enforces IBKR's pacing table (its own copy, from IBKR's documentation): every row
refuses requests sent too fast with 429 and a penalty box, and the provider's table agrees."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests
from ibkr_sandbox.pacing import RULES, PacingRule
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrClient
from tests.support.pacing_samples import SAMPLES


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.bucket)
def test_the_sandbox_refuses_each_row_when_sent_too_fast(
    rule: PacingRule, fresh_sandbox: RunningSandbox, make_client: Callable[..., IbkrClient]
) -> None:
    """``requests + 1`` raw requests at once: the last gets 429 with Retry-After and puts the
    username in the penalty box; the first ``requests`` are admitted (whatever they answer)."""
    bearer = make_client(fresh_sandbox).session().bearer
    if rule.bucket == "tickle":
        time.sleep(rule.seconds * 1.1)  # opening the session asked /tickle who the user is
    method, path = SAMPLES[rule.bucket]
    url = f"{fresh_sandbox.base_url}/v1/api{path}"
    headers = {"Authorization": f"Bearer {bearer}"}
    with requests.Session() as http:
        answers = [http.request(method, url, headers=headers, timeout=10) for _ in range(rule.requests + 1)]
    assert [a.status_code for a in answers[:-1]].count(429) == 0
    assert answers[-1].status_code == 429 and int(answers[-1].headers["Retry-After"]) >= 1
    stats = fresh_sandbox.stats()
    assert stats["penalties"] == 1 and stats[f"violations_{rule.bucket}"] == 1
    # In the penalty box, every request of the username is refused.
    boxed = requests.get(f"{fresh_sandbox.base_url}/v1/api/iserver/accounts", headers=headers, timeout=10)
    assert boxed.status_code == 429


def test_the_sandbox_refuses_more_than_the_global_limit_in_one_second(
    fresh_sandbox: RunningSandbox, make_client: Callable[..., IbkrClient]
) -> None:
    fresh_sandbox.configure(rate_limit=20)
    bearer = make_client(fresh_sandbox).session().bearer
    headers = {"Authorization": f"Bearer {bearer}"}
    url = f"{fresh_sandbox.base_url}/v1/api/iserver/accounts"
    with requests.Session() as http:
        statuses = [http.get(url, headers=headers, timeout=10).status_code for _ in range(40)]
    assert 429 in statuses
    stats = fresh_sandbox.stats()
    assert stats["violations_global"] == 1
    # the window that broke, for a failing test's message: 20 arrivals within the last second
    seen = stats["last_pacing_violation"]
    assert seen["bucket"] == "global" and len(seen["counted_ms_before"]) == 20
    assert all(0 <= ms < 1000 for ms in seen["counted_ms_before"])
