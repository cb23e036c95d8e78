"""The sandbox holds only what it is sure of against a client: a request it read after a stall
of its own may have arrived as early as the loop last ran (``ibkr_sandbox.loopwatch``), both for
pacing windows and for the order of OAuth 1.0a timestamps.
The case is the one measured in a full ``make test``: slots 123 ms apart (9/s with the client's
10 % margin), the first two read together 170 ms late."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from types import SimpleNamespace

from ibkr_sandbox.loopwatch import IDLE_SECONDS, STALL_SECONDS, TICK_SECONDS, Arrival, LoopWatch
from ibkr_sandbox.oauth1 import (
    RFC3526_PRIME_2048,
    Consumer,
    OAuth1Rejected,
    OAuth1Verifier,
    quote,
    signature_base,
)
from ibkr_sandbox.pacing import PacingLedger

SLOT = 0.123
LIMIT = 9.0


def _admit_all(ledger: PacingLedger, arrivals: list[tuple[float, float | None]]) -> list[float | None]:
    return [
        ledger.admit(
            "user",
            "GET",
            "/iserver/accounts",
            read,
            earliest=earliest,
            global_limit=LIMIT,
            endpoint_limits=True,
            penalty_seconds=60.0,
        )[0]
        for read, earliest in arrivals
    ]


def _stalled_run(*, with_earliest: bool) -> list[tuple[float, float | None]]:
    """Ten requests sent on their slots; the sandbox stalled from 0.001 s to 0.170 s, so the
    first two are read at 0.170 s and the third 30 ms late."""
    reads = [0.170, 0.1703, 2 * SLOT + 0.030] + [k * SLOT + 0.001 for k in range(3, 10)]
    earliest = [0.001, 0.001] + [None] * 8
    return [(read, e if with_earliest else None) for read, e in zip(reads, earliest, strict=True)]


def test_a_bunching_caused_by_the_sandboxs_stall_is_not_a_violation() -> None:
    assert _admit_all(PacingLedger(), _stalled_run(with_earliest=True)) == [None] * 10


def test_the_same_reads_without_the_stall_known_are_a_violation() -> None:
    waits = _admit_all(PacingLedger(), _stalled_run(with_earliest=False))
    assert waits[:9] == [None] * 9 and waits[9] == 60.0


def test_ten_requests_read_within_a_second_without_a_stall_are_refused() -> None:
    reads: list[tuple[float, float | None]] = [(k * 0.1, k * 0.1) for k in range(10)]
    assert _admit_all(PacingLedger(), reads)[-1] == 60.0


def test_the_watch_bounds_an_arrival_by_the_last_time_the_loop_ran() -> None:
    now = [100.0]
    watch = LoopWatch(clock=lambda: now[0])

    async def requests_read_at() -> list[float]:
        first = watch.arrival(100.0)  # asleep: no bound known, the read time; wakes the watch
        await asyncio.sleep(0)  # the watch notes 100.0
        on_time = watch.arrival(100.0 + STALL_SECONDS * 0.9)
        stalled = watch.arrival(100.17)
        now[0] = 100.17 + IDLE_SECONDS  # no request since: the watch goes to sleep
        await asyncio.sleep(TICK_SECONDS * 2)
        after_idle = watch.arrival(now[0] + 5.0)  # strict again, not counted from the old tick
        return [first.earliest, on_time.earliest, stalled.earliest, after_idle.earliest - now[0]]

    assert asyncio.run(requests_read_at()) == [100.0, 100.0 + STALL_SECONDS * 0.9, 100.0, 5.0]


# OAuth 1.0a: "never earlier than a previous request's timestamp" is judged by arrival, not by
# the order the sandbox's worker threads happen to check requests in.

URL = "http://127.0.0.1/v1/api/iserver/accounts"
LST = base64.b64encode(b"live-session-token!!").decode()


def _verifier() -> OAuth1Verifier:
    consumer = Consumer(
        consumer_key="ck",
        access_token="at",
        prepend=b"",
        signature_public_pem="",
        dh_prime=RFC3526_PRIME_2048,
        credential="user",
        tokens=[LST],
    )
    settings = SimpleNamespace(oauth1_timestamp_tolerance=0, oauth1_query_signing="guide")
    return OAuth1Verifier({"ck": consumer}, settings)


def _signed(stamp: int) -> str:
    params = {
        "oauth_consumer_key": "ck",
        "oauth_token": "at",
        "oauth_signature_method": "HMAC-SHA256",
        "oauth_timestamp": str(stamp),
        "oauth_nonce": secrets.token_hex(8),
    }
    base = signature_base("GET", URL, params).encode()
    digest = hmac.new(base64.b64decode(LST), base, hashlib.sha256).digest()
    params["oauth_signature"] = quote(base64.b64encode(digest).decode())
    return 'OAuth realm="limited_poa", ' + ", ".join(f'{k}="{v}"' for k, v in params.items())


def _check(verifier: OAuth1Verifier, stamp: int, earliest: float, read: float) -> int:
    try:
        verifier.request("GET", URL, {}, _signed(stamp), Arrival(earliest, read))
    except OAuth1Rejected as exc:
        return exc.status
    return 200


def test_requests_checked_out_of_their_arrival_order_keep_their_timestamps() -> None:
    verifier, now, second = _verifier(), time.time(), int(time.time())
    # the request read second (stamp second + 1) is checked first: the first is still earlier
    assert _check(verifier, second + 1, now + 0.022, now + 0.022) == 200
    assert _check(verifier, second, now, now) == 200


def test_an_older_timestamp_that_surely_arrived_later_is_refused() -> None:
    verifier, now, second = _verifier(), time.time(), int(time.time())
    assert _check(verifier, second + 1, now, now) == 200
    assert _check(verifier, second, now + 0.022, now + 0.022) == 401


def test_a_request_read_after_a_stall_may_have_arrived_before_one_read_ahead_of_it() -> None:
    verifier, now, second = _verifier(), time.time(), int(time.time())
    assert _check(verifier, second + 1, now, now) == 200
    assert _check(verifier, second, now - 0.15, now + 0.03) == 200  # the loop last ran 150 ms before
