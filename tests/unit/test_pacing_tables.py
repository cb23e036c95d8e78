"""The provider's pacing table against the sandbox's, which is written from IBKR's documentation
(a wrong row on either side fails here instead of agreeing with itself)."""

from __future__ import annotations

import pytest
from ibkr_sandbox.pacing import RULES, rule_for

from ibkr_provider.client.http.limits import ENDPOINT_LIMITS, endpoint_limit
from tests.support.pacing_samples import SAMPLES


def test_every_documented_row_has_a_sample() -> None:
    assert set(SAMPLES) == {rule.bucket for rule in RULES}
    for bucket, (method, path) in SAMPLES.items():
        rule = rule_for(method, path)
        assert rule is not None and rule.bucket == bucket


@pytest.mark.parametrize("bucket", sorted(SAMPLES))
def test_the_provider_paces_each_row_at_least_as_strictly_as_ibkr(bucket: str) -> None:
    method, path = SAMPLES[bucket]
    rule = rule_for(method, path)
    limit = endpoint_limit(method, path)
    assert rule is not None and limit is not None, f"the provider has no limit for {method} {path}"
    assert limit.limit / limit.per_seconds <= rule.requests / rule.seconds, (limit, rule)


def test_every_provider_row_matches_a_documented_row() -> None:
    covered = {endpoint_limit(method, path) for method, path in SAMPLES.values()}
    assert covered == set(ENDPOINT_LIMITS)
