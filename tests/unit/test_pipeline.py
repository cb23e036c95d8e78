"""The request pipeline with a fake transport and a fake clock: prompts, cOID adoption, session
recovery and the retry policy, each in well under a second.

The fake transport answers like IBKR's Web API for the few endpoints a test scripts (``routes``)
and records every request; the client above it is the real one (session manager, pipeline,
endpoint groups) on an in-memory session store. Behaviour over HTTP is the sandbox's to prove
(tests/integration); these pin the pipeline's decisions.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from ibkr_provider.client import (
    IbkrClient,
    IbkrClientConfig,
    IbkrConnectionError,
    IbkrError,
    IbkrOrderRefusedError,
    IbkrRateLimitError,
    IbkrSessionError,
    OrderTicket,
)
from ibkr_provider.client.errors import IbkrErrorCode
from ibkr_provider.client.http.pacing import Pacer
from ibkr_provider.client.http.retries import RetryPolicy, call_with_retries
from ibkr_provider.client.http.transport import HttpTransport
from ibkr_provider.client.session.stores.memory import MemorySessionStore

ACCOUNT = "DU1234567"
Handler = Callable[[Any], Any]
_hosts = itertools.count()


class FakeClock:
    """Time that moves only when told to, plus a microsecond per reading (so the pacer's slots
    are always in the past and nothing sleeps)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 1e-6
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Answers(list[Any]):
    """Answers given one per request, the last one repeating."""


class FakeIbkr(HttpTransport):
    """Answers ``(method, path)`` from ``routes``: a JSON value, an exception to raise, or
    :class:`Answers`; records every request."""

    def __init__(self, routes: Mapping[tuple[str, str], Any]) -> None:
        super().__init__(verify=True, timeout=1.0)
        self.routes = {
            key: list(value) if isinstance(value, Answers) else [value] for key, value in routes.items()
        }
        self.sent: list[tuple[str, str, Any, bool]] = []

    def send(self, method: str, url: str, **kwargs: Any) -> Any:
        if kwargs.get("prepare") is not None:
            kwargs["prepare"]()  # the pacer's slot and the signature, as for a real attempt
        path = url.split("/v1/api", 1)[1]
        self.sent.append((method, path, kwargs.get("json_body"), kwargs.get("idempotent", True)))
        answers = self.routes.get((method, path))
        if answers is None:
            raise AssertionError(f"unscripted request {method} {path}")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def paths(self, method: str | None = None) -> list[str]:
        return [path for verb, path, _, _ in self.sent if method is None or verb == method]


SESSION = {
    ("POST", "/iserver/auth/status"): {"authenticated": True, "connected": True, "competing": False},
    ("GET", "/iserver/accounts"): {"accounts": [ACCOUNT], "isPaper": True, "selectedAccount": ACCOUNT},
    ("GET", "/portfolio/accounts"): [{"id": ACCOUNT, "accountId": ACCOUNT, "type": "DEMO"}],
    ("GET", "/iserver/account/orders"): {"orders": []},
}


def _client(routes: Mapping[tuple[str, str], Any]) -> tuple[IbkrClient, FakeIbkr, FakeClock]:
    fake, clock = FakeIbkr({**SESSION, **routes}), FakeClock()
    config = IbkrClientConfig.from_mapping(
        {"auth_type": "gateway", "base_url": f"https://gateway-{next(_hosts)}.test", "rate_limit": 1000}
    )
    store = MemorySessionStore()
    client = IbkrClient(config, transport=fake, store=store, clock=clock)
    # IBKR's per-endpoint pacing (1 per 5 s for the order list) waits on the fake clock too
    sender = client.sessions.sender
    sender.pacer = Pacer(store, client.session_key, global_limit=1000, clock=clock, sleep=clock.advance)
    return client, fake, clock


def _ticket(coid: str = "af-1") -> OrderTicket:
    return OrderTicket(conid=8314, side="BUY", quantity=1, order_type="LMT", limit_price=1, coid=coid)


PLACE = ("POST", f"/iserver/account/{ACCOUNT}/orders")


def test_an_allowed_prompt_is_confirmed_and_the_order_is_never_retried_blindly() -> None:
    client, fake, _ = _client(
        {
            PLACE: [
                {"id": "r1", "messageIds": ["o163"], "message": ["price exceeds the limit"]}
            ],  # one prompt
            ("POST", "/iserver/reply/r1"): [{"order_id": "101", "order_status": "Submitted"}],
        }
    )
    with client:
        placed = client.orders.place(ACCOUNT, _ticket(), allowed_message_ids={"o163"})
    assert placed.order_id == "101" and placed.confirmed_message_ids == ("o163",) and not placed.adopted
    writes = [(path, body, idempotent) for verb, path, body, idempotent in fake.sent if verb == "POST"]
    assert (PLACE[1], {"orders": [_ticket().to_json(ACCOUNT)]}, False) in writes
    assert ("/iserver/reply/r1", {"confirmed": True}, False) in writes


def test_an_unknown_prompt_is_declined_and_fails_closed() -> None:
    client, fake, _ = _client(
        {
            PLACE: [{"id": "r2", "messageIds": ["o999"], "message": ["something new"]}],
            ("POST", "/iserver/reply/r2"): [{"ok": True}],
        }
    )
    with client, pytest.raises(IbkrOrderRefusedError) as excinfo:
        client.orders.place(ACCOUNT, _ticket(), allowed_message_ids={"o163"})
    assert excinfo.value.code is IbkrErrorCode.PROMPT_DECLINED and excinfo.value.permanent
    assert (("POST", "/iserver/reply/r2", {"confirmed": False}, False)) in fake.sent


def test_an_order_of_the_same_coid_is_adopted_not_placed_again() -> None:
    listed = {
        "orders": [
            {"orderId": 77, "conid": 8314, "status": "Submitted", "order_ref": "af-1", "acct": ACCOUNT}
        ]
    }
    client, fake, _ = _client({("GET", "/iserver/account/orders"): listed})
    with client:
        placed = client.orders.place(ACCOUNT, _ticket("af-1"))
    assert placed.adopted and placed.order_id == "77"
    assert PLACE[1] not in fake.paths("POST")


def test_a_duplicate_coid_rejection_adopts_the_earlier_order() -> None:
    listed = {"orders": [{"orderId": 78, "conid": 8314, "status": "PreSubmitted", "order_ref": "af-2"}]}
    client, _, _ = _client(
        {
            ("GET", "/iserver/account/orders"): Answers([{"orders": []}, listed]),
            PLACE: {"error": "Local order ID=af-2 is already registered."},
        }
    )
    with client:
        placed = client.orders.place(ACCOUNT, _ticket("af-2"))
    assert placed.adopted and placed.order_id == "78"


def test_a_dropped_brokerage_session_is_recovered_once_and_the_portfolio_preflight_repeated() -> None:
    no_bridge = IbkrSessionError("no bridge", code=IbkrErrorCode.NO_BRIDGE)
    summary = {"netliquidation": {"amount": 100.0, "currency": "USD"}}
    client, fake, _ = _client(
        {
            ("GET", f"/portfolio/{ACCOUNT}/summary"): Answers([no_bridge, summary]),
            ("POST", "/iserver/auth/ssodh/init"): {"authenticated": True, "connected": True},
        }
    )
    with client:
        assert client.account_summary(ACCOUNT).net_liquidation == 100
    assert client.sessions.stats.recovered == 1
    assert fake.paths().count("/portfolio/accounts") == 2  # once before, once after the recovery
    assert fake.paths().count(f"/portfolio/{ACCOUNT}/summary") == 2


def test_a_session_that_stays_broken_is_not_retried_in_a_loop() -> None:
    no_bridge = IbkrSessionError("no bridge", code=IbkrErrorCode.NO_BRIDGE)
    client, fake, _ = _client(
        {
            ("GET", "/iserver/account/trades"): no_bridge,
            ("POST", "/iserver/auth/ssodh/init"): {"authenticated": True, "connected": True},
        }
    )
    with client, pytest.raises(IbkrSessionError):
        client.iserver.trades()
    assert fake.paths().count("/iserver/account/trades") == 2


def test_the_portfolio_preflight_is_shared_for_five_minutes() -> None:
    client, fake, clock = _client({("GET", f"/portfolio/{ACCOUNT}/ledger"): {"BASE": {"cashbalance": 1}}})
    with client:
        client.account_ledger(ACCOUNT)
        client.account_ledger(ACCOUNT)
        clock.advance(301)
        client.account_ledger(ACCOUNT)
    assert fake.paths().count("/portfolio/accounts") == 2


class _Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _flaky(errors: list[BaseException]) -> Callable[[], str]:
    def attempt() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    return attempt


def test_the_retry_policy_retries_reads_but_never_an_ambiguous_order() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.5, max_backoff=4)
    sleeps = _Sleeps()
    dropped = [IbkrConnectionError("reset", code=IbkrErrorCode.CONNECTION) for _ in range(2)]
    assert (
        call_with_retries(_flaky(dropped), policy=policy, idempotent=True, describe="GET", sleep=sleeps)
        == "ok"
    )
    assert len(sleeps.waits) == 2
    with pytest.raises(IbkrConnectionError):
        call_with_retries(
            _flaky([IbkrConnectionError("reset", code=IbkrErrorCode.CONNECTION)]),
            policy=policy,
            idempotent=False,
            describe="POST order",
            sleep=sleeps,
        )
    assert len(sleeps.waits) == 2  # no wait: the order was not sent again
    limited = [IbkrRateLimitError("429", status=429, retry_after=3.0)]
    assert (
        call_with_retries(_flaky(limited), policy=policy, idempotent=False, describe="POST", sleep=sleeps)
        == "ok"
    )
    assert sleeps.waits[-1] == pytest.approx(3.0)  # a 429 was refused, not run: safe to resend


def test_the_retry_policy_gives_up_within_its_attempts() -> None:
    sleeps = _Sleeps()
    errors: list[BaseException] = [
        IbkrConnectionError("down", code=IbkrErrorCode.CONNECTION) for _ in range(9)
    ]
    with pytest.raises(IbkrConnectionError):
        call_with_retries(
            _flaky(errors), policy=RetryPolicy(max_attempts=4), idempotent=True, describe="GET", sleep=sleeps
        )
    assert len(sleeps.waits) == 3 and len(errors) == 5


def test_a_client_closed_while_another_thread_opens_its_session_keeps_nothing_alive() -> None:
    """A trigger cancelled mid-login closes its client while the login's thread still runs: the
    session that thread then opens must not start a keep-alive nobody will stop."""
    client, _, _ = _client({})
    client.connect()
    assert client.keepalive_running  # an open client keeps its session alive
    client.close()
    assert not client.keepalive_running
    late, fake, _ = _client({})
    answer = fake.send

    def send_then_close(method: str, url: str, **kwargs: Any) -> Any:
        sent = answer(method, url, **kwargs)
        if url.endswith("/iserver/accounts"):  # the session's last set-up request is answered
            late.close()  # ...and the client is closed before the thread marks the session ready
        return sent

    fake.send = send_then_close  # type: ignore[method-assign]
    with pytest.raises(IbkrError) as closed:
        late.connect()  # its status request, after the session opened, is not sent
    assert closed.value.code is IbkrErrorCode.CLIENT_CLOSED
    assert fake.paths() == ["/iserver/auth/status", "/iserver/accounts"]
    assert not late.keepalive_running
