"""The pacer reserves slots in order: with a fake clock, requests are spaced exactly one interval
(the limit plus the 10 % margin) apart, per-endpoint limits come first, and clients sharing a
store never get the same slot."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from ibkr_provider.client.http.pacing import Pacer, interval_ms, lateness_allowed_ms, window_margin_ms
from ibkr_provider.client.session.record import SessionRecord
from ibkr_provider.client.session.sender import SessionSender
from ibkr_provider.client.session.stores.base import SessionStore
from ibkr_provider.client.session.stores.file import FileSessionStore
from ibkr_provider.client.session.stores.memory import MemorySessionStore


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def _pacer(store: MemorySessionStore, fake: FakeTime, sleep: Callable[[float], None]) -> Pacer:
    """One process's pacer at IBKR's OAuth limit (50/s) on the shared ``store``."""
    return Pacer(store, "k", global_limit=50, clock=fake.clock, sleep=sleep)


def test_requests_are_spaced_by_the_limit_and_the_margin(fake: FakeTime) -> None:
    MemorySessionStore.clear()
    pacer = Pacer(MemorySessionStore(), "k", global_limit=10, clock=fake.clock, sleep=fake.sleep)
    sent = []
    for _ in range(5):
        pacer.acquire("GET", "/iserver/accounts")
        sent.append(fake.now)
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(sent)]
    assert gaps == [0.11] * 4  # 10/s, 10 % wider


def test_a_per_endpoint_limit_comes_before_the_global_one(fake: FakeTime) -> None:
    MemorySessionStore.clear()
    pacer = Pacer(MemorySessionStore(), "k", global_limit=50, clock=fake.clock, sleep=fake.sleep)
    pacer.acquire("GET", "/portfolio/accounts")
    start = fake.now
    pacer.acquire("GET", "/portfolio/accounts")  # IBKR: 1 per 5 s
    assert fake.now - start == pytest.approx(5.5)
    pacer.acquire("GET", "/iserver/accounts")  # only the global bucket: no wait beyond 22 ms
    assert fake.now - start == pytest.approx(5.5 + 0.022)


def test_interval_rounds_up_to_whole_milliseconds() -> None:
    assert interval_ms(9, 1.0) == 123 and interval_ms(1, 5.0) == 5500 and interval_ms(10_000, 1.0) == 1


@pytest.mark.parametrize("backend", ["memory", "file"])
def test_clients_sharing_a_store_never_get_the_same_slot(backend: str, tmp_path: Path) -> None:
    """Eight threads (each its own pacer, as eight processes would have) reserving at once get
    distinct slots, one interval apart, none lost."""
    MemorySessionStore.clear()
    store: SessionStore = MemorySessionStore() if backend == "memory" else FileSessionStore(tmp_path)
    slots: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def reserve() -> None:
        barrier.wait()
        for _ in range(10):
            slot = store.reserve_slot("k", "global", earliest_ms=1_000, interval_ms=100)
            with lock:
                slots.append(slot)

    threads = [threading.Thread(target=reserve) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(slots) == list(range(1_000, 1_000 + 80 * 100, 100))


def test_a_process_woken_too_late_takes_a_new_slot_instead_of_crowding_the_next(fake: FakeTime) -> None:
    """An overloaded host wakes a process 0.5 s after its slot: sending then would land next to
    the requests of the following slots, so the pacer gives the missed slot up."""
    MemorySessionStore.clear()
    store = MemorySessionStore()
    pacer = Pacer(store, "k", global_limit=10, clock=fake.clock, sleep=fake.sleep)
    pacer.acquire("GET", "/iserver/accounts")  # slot at 1000.0, on time
    oversleep = [0.5]

    def late_sleep(seconds: float) -> None:
        fake.sleep(seconds + (oversleep.pop() if oversleep else 0.0))

    late = Pacer(store, "k", global_limit=10, clock=fake.clock, sleep=late_sleep)
    slot = late.acquire("GET", "/iserver/accounts")
    assert slot == 1_000_610  # the missed slot (1000.11) was given up; the new one is at 1000.61
    assert fake.now * 1000 - slot <= 100


@pytest.mark.parametrize(
    ("limit", "oversleep", "kept"),
    [
        (50, 0.04, True),  # slots 22 ms apart: 40 ms late is within half the 100 ms margin
        (50, 0.06, False),
        (10, 0.04, True),  # the gateway's 10/s, slots 110 ms apart
        (10, 0.06, False),
    ],
)
def test_a_global_slot_is_kept_within_half_the_windows_margin_at_either_rate(
    fake: FakeTime, limit: int, oversleep: float, kept: bool
) -> None:
    """The global bucket gives a slot up by the same rule as the endpoint buckets: woken more than
    half of ``limit x interval - window`` late (50 ms at 50/s and at 10/s), the other half being
    for the way to IBKR. One interval late, the rule before, let a request 110 ms late at 10/s go:
    eleven could reach IBKR within one second."""
    MemorySessionStore.clear()
    store = MemorySessionStore()
    on_time = Pacer(store, "k", global_limit=limit, clock=fake.clock, sleep=fake.sleep)
    on_time.acquire("GET", "/iserver/accounts")
    late = [oversleep]

    def late_sleep(seconds: float) -> None:
        fake.sleep(seconds + (late.pop() if late else 0.0))

    woken_late = Pacer(store, "k", global_limit=limit, clock=fake.clock, sleep=late_sleep)
    slot = woken_late.acquire("GET", "/iserver/accounts")
    assert (slot == 1_000_000 + interval_ms(limit, 1.0)) is kept
    assert round(fake.now * 1000) - slot <= lateness_allowed_ms(limit, 1.0)


@pytest.mark.parametrize(("limit", "per_seconds"), [(50, 1.0), (10, 1.0), (9, 1.0), (1, 5.0), (1, 1.0)])
def test_the_margin_is_what_a_window_holds_and_a_process_takes_half_of_it(
    limit: int, per_seconds: float
) -> None:
    """The arithmetic behind the rule. Slots one interval apart; every request whose slot came
    before ``late`` reaches IBKR at ``late`` (each within ``late`` of its slot, as after a host
    stalled), the rest on time. Late by the margin, no window of IBKR's holds more than the limit;
    one millisecond more, and one window holds one request too many. A process may take half."""
    step, window = interval_ms(limit, per_seconds), round(per_seconds * 1000)
    margin = window_margin_ms(limit, per_seconds)
    assert margin >= window // 10
    assert lateness_allowed_ms(limit, per_seconds) == margin // 2

    def most_in_a_window(late: int) -> int:
        sends = sorted(max(k * step, late) for k in range(400))
        return max(sum(1 for t in sends if start <= t < start + window) for start in sends)

    assert most_in_a_window(margin) == limit
    assert most_in_a_window(margin + 1) == limit + 1


def test_a_request_waiting_for_its_endpoint_slot_holds_no_other_request_back(fake: FakeTime) -> None:
    """While one process waits 5.5 s for its ``/portfolio/accounts`` slot, another process of the
    same user sends ``/iserver/accounts`` at once: the global slot is taken only after the
    endpoint slot was waited out (reserved together, the global bucket was held 5.5 s ahead)."""
    MemorySessionStore.clear()
    store = MemorySessionStore()
    other = _pacer(store, fake, fake.sleep)
    other_waited: list[float] = []

    def sleep_while_the_other_process_sends(seconds: float) -> None:
        if not other_waited:  # the first wait: the endpoint slot, 5.5 s ahead
            started = fake.now
            other.acquire("GET", "/iserver/accounts")
            other_waited.append(fake.now - started)
        fake.sleep(seconds)

    _pacer(store, fake, fake.sleep).acquire("GET", "/portfolio/accounts")
    waiting = _pacer(store, fake, sleep_while_the_other_process_sends)
    start = fake.now
    waiting.acquire("GET", "/portfolio/accounts")
    assert other_waited == [pytest.approx(0.022)]  # one global interval after the first request
    assert fake.now - start == pytest.approx(0.022 + 5.5)  # the fake sleeps one after the other


@pytest.mark.parametrize(("oversleep", "sent_after"), [(0.2, 5.7), (0.3, 11.0)])
def test_an_endpoint_slot_is_kept_within_its_margin_and_given_up_beyond_it(
    fake: FakeTime, oversleep: float, sent_after: float
) -> None:
    """Woken 0.2 s after its ``/portfolio/accounts`` slot (margin 0.5 s, half of it for the
    wake-up), a request still goes; 0.3 s after, it takes the bucket's next slot."""
    MemorySessionStore.clear()
    store = MemorySessionStore()
    _pacer(store, fake, fake.sleep).acquire("GET", "/portfolio/accounts")
    late = [oversleep]

    def late_sleep(seconds: float) -> None:
        fake.sleep(seconds + (late.pop() if late else 0.0))

    start = fake.now
    _pacer(store, fake, late_sleep).acquire("GET", "/portfolio/accounts")
    assert fake.now - start == pytest.approx(sent_after)


def test_a_snapshot_woken_40_ms_late_keeps_its_slot(fake: FakeTime) -> None:
    """10 snapshots per second, slots 110 ms apart: a request 40 ms late still leaves at most ten
    in any second (the margin is 10 % of the window, 100 ms, not of one interval, 11 ms)."""
    MemorySessionStore.clear()
    store = MemorySessionStore()
    _pacer(store, fake, fake.sleep).acquire("GET", "/iserver/marketdata/snapshot")
    late = [0.04]

    def late_sleep(seconds: float) -> None:
        fake.sleep(seconds + (late.pop() if late else 0.0))

    start = fake.now
    _pacer(store, fake, late_sleep).acquire("GET", "/iserver/marketdata/snapshot")
    assert fake.now - start == pytest.approx(0.11 + 0.04)


class _SignedSeconds:
    """An auth strategy that records the timestamp each request is signed with."""

    def __init__(self) -> None:
        self.seconds: list[int] = []

    def headers_for(self, bearer: str | None, *, timestamp: int, **_: object) -> dict[str, str]:
        self.seconds.append(timestamp)
        return {}


class _Wire:
    """A transport that prepares each request (pace, sign) and answers nothing."""

    def send(self, method: str, url: str, *, prepare: Callable[[], object], **_: object) -> None:
        prepare()


def test_a_process_woken_after_its_slot_signs_the_second_it_sends_in(fake: FakeTime) -> None:
    """OAuth 1.0a timestamps follow the order requests go out in. A process keeps a slot it wakes
    40 ms late for (within half the 50/s bucket's margin); when that slot was in second 1000 and
    it wakes in 1001, the processes after it have already sent timestamps of 1001: it signs 1001
    too, not its slot's 1000."""
    MemorySessionStore.clear()
    store = MemorySessionStore()
    fake.now = 1_000.956
    late = [0.04]

    def late_sleep(seconds: float) -> None:
        fake.sleep(seconds + (late.pop() if late else 0.0))

    auth = _SignedSeconds()
    senders = [
        SessionSender(
            api_url="https://ibkr.invalid/v1/api",
            auth=auth,  # type: ignore[arg-type]
            transport=_Wire(),  # type: ignore[arg-type]
            pacer=Pacer(store, "k", global_limit=50, clock=fake.clock, sleep=sleep),
            store=store,
            key="k",
            clock=fake.clock,
        )
        for sleep in (fake.sleep, late_sleep)
    ]
    record = SessionRecord(generation=1, created_at=fake.now, expires_at=fake.now + 3600)
    for sender in senders:
        sender.send_on(record, "GET", "/iserver/accounts")
    assert round(fake.now, 3) == 1_001.018  # the second slot, 1000.978, kept 40 ms late
    assert auth.seconds == [1_000, 1_001]
