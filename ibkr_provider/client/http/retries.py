"""Bounded retries with exponential backoff and jitter (tenacity), honouring ``Retry-After``.

What is retried: connection errors, timeouts, 429, 502, 503 and 504. A 429 means IBKR did not
process the request, so it is retried for every request; the others may have reached IBKR,
so they are retried only for requests that are safe to repeat. A request that places,
modifies or confirms an order is never retried blindly (the orders feature makes such a retry
safe with an idempotency key instead).

Bounds: ``max_attempts`` tries and ``max_seconds`` in total, counting the next sleep, so a
``Retry-After`` longer than the time left ends the retries at once. The final error says how
many attempts were made, over how long, and why each failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from ibkr_provider.client.errors import (
    IbkrConnectionError,
    IbkrError,
    IbkrErrorCode,
    IbkrRateLimitError,
    IbkrRequestError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry transient failures. ``max_attempts=1`` disables retries."""

    max_attempts: int = 5
    max_seconds: float = 60.0
    initial_backoff: float = 0.5
    max_backoff: float = 20.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_seconds <= 0:
            raise ValueError("max_seconds must be positive")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, IbkrRateLimitError):
        return "429" + (f" (Retry-After {exc.retry_after:g} s)" if exc.retry_after is not None else "")
    if isinstance(exc, IbkrConnectionError):
        return str(exc.code or IbkrErrorCode.CONNECTION)
    if isinstance(exc, IbkrError) and exc.status:
        return str(exc.status)
    return type(exc).__name__


def is_transient(exc: BaseException, *, idempotent: bool) -> bool:
    """Whether ``exc`` is worth another attempt for a request of this kind."""
    if isinstance(exc, IbkrRateLimitError):
        return True
    if not idempotent:
        return False
    if isinstance(exc, IbkrConnectionError):
        return exc.code is not IbkrErrorCode.TLS
    return isinstance(exc, IbkrRequestError) and exc.status in RETRYABLE_STATUSES


def call_with_retries(
    attempt: Callable[[], T],
    *,
    policy: RetryPolicy,
    idempotent: bool,
    describe: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``attempt`` until it succeeds, fails for good, or the policy's bounds are reached.

    The first attempt runs bare (it is every request's path, and nearly always succeeds); only a
    transient failure builds the retry machinery, which then replays that failure as its own
    first attempt, so bounds, waits and the final message count it like any other.
    """
    started = time.monotonic()
    try:
        return attempt()
    except IbkrError as first:
        if policy.max_attempts == 1 or not is_transient(first, idempotent=idempotent):
            raise
        replay: list[IbkrError] = [first]

    def attempt_or_replay() -> T:
        if replay:
            raise replay.pop()
        return attempt()

    backoff = wait_exponential_jitter(
        multiplier=policy.initial_backoff, max=policy.max_backoff, jitter=policy.initial_backoff
    )
    reasons: list[str] = []

    def wait(state: RetryCallState) -> float:
        delay = backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, IbkrRateLimitError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return float(delay)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sleep_for = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "IBKR %s failed (%s), attempt %d of %d; retrying in %.2f s",
            describe,
            _reason(exc) if exc else "?",
            state.attempt_number,
            policy.max_attempts,
            sleep_for,
        )

    def record(exc: BaseException) -> bool:
        reasons.append(_reason(exc))
        return is_transient(exc, idempotent=idempotent)

    retrying = Retrying(
        retry=retry_if_exception(record),
        wait=wait,
        stop=stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.max_seconds),
        before_sleep=before_sleep,
        sleep=sleep,
    )
    try:
        return retrying(attempt_or_replay)
    except RetryError as exhausted:
        last = exhausted.last_attempt.exception()
        if not isinstance(last, IbkrError):  # only IbkrErrors are retried
            raise
        elapsed = time.monotonic() - started
        last.message = (
            f"{last.message}; gave up after {len(reasons)} attempt(s) in {elapsed:.1f} s "
            f"(failures: {', '.join(reasons)}; "
            f"limits: {policy.max_attempts} attempts, {policy.max_seconds:g} s)"
        )
        last.args = (last.message,)
        raise last from None
