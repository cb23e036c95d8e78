"""Overlapping secrets are masked whole, whatever order the masker tries its patterns in."""

from __future__ import annotations

import re

import pytest

from ibkr_provider.client.secrets import SecretRegistry


def _mask(patterns: list[str], text: str) -> str:
    """A masker like Airflow's: one alternation of the registered secrets, in the given order."""
    return re.compile("|".join(re.escape(p) for p in patterns)).sub("***", text)


@pytest.mark.parametrize("shorter_first", [True, False])
def test_a_secret_inside_another_leaves_nothing_visible(shorter_first: bool) -> None:
    bearer = "Ab3dE5gH7jK9mN1pQ3sT5vX7zB9dF1hJ2kL4nP6rS8uW0yA"
    session = bearer[:32]  # e.g. a session id derived from the token
    registered: list[str] = []
    registry = SecretRegistry(registered.append)
    registry(bearer)
    registry(session)
    registry(bearer)  # once is enough
    patterns = sorted(registered, key=len, reverse=not shorter_first)
    line = f"bearer={bearer} session={session}"
    masked = _mask(patterns, line)
    assert bearer[32:] not in masked and session not in masked, masked
    assert registered.count(bearer) == 1


def test_a_key_and_its_lines_register_no_fragments() -> None:
    pem = (
        "-----BEGIN PRIVATE KEY-----\n"
        + "\n".join(f"{n:02d}" + "A" * 62 for n in range(20))
        + "\n-----END PRIVATE KEY-----\n"
    )
    registered: list[str] = []
    registry = SecretRegistry(registered.append)
    registry(pem)
    for line in pem.splitlines()[1:-1]:
        registry(line)
    assert len(registered) == 21  # the key and its 20 lines, no pieces
    assert "A" * 62 not in _mask(sorted(registered, key=len), pem)
