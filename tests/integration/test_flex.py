"""Flex Web Service: the client and operator against the sandbox's Flex service over HTTP."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from ibkr_sandbox.process import RunningSandbox

from ibkr_provider.client import IbkrAuthError, IbkrRequestError
from ibkr_provider.client.hosts import DEFAULT_FLEX_URL
from ibkr_provider.flex.client import FlexClient

if TYPE_CHECKING:
    from ibkr_provider.hooks.flex import IbkrFlexHook


def _flex(sandbox: RunningSandbox, **overrides: object) -> FlexClient:
    conn = json.loads(sandbox.flex_connection_json())
    options: dict[str, object] = {"token": conn["password"], "base_url": conn["host"], "poll_interval": 0.3}
    options.update(overrides)
    return FlexClient(**options)  # type: ignore[arg-type]


def test_report_survives_1019_and_1018(fresh_sandbox: RunningSandbox) -> None:
    fresh_sandbox.configure(flex_pending_polls=3, flex_min_interval=0.5)
    # A 0.3 s poll interval is faster than the sandbox allows: the first poll after a 1019
    # draws a 1018, and the client backs off.
    report = _flex(fresh_sandbox).fetch("100001", from_date=date(2026, 11, 2), to_date=date(2026, 11, 20))
    stats = fresh_sandbox.stats()
    assert stats["flex_1019"] == 3 and stats["flex_1018"] >= 1
    assert report.polls == stats["flex_polls"]
    positions = report.rows("OpenPositions")
    assert len(positions) == 273 + 6 + 3
    assert {row["accountId"] for row in positions} == {"DU1234567", "DU2345678", "U3456789"}
    assert report.rows("CashReport") and report.content.startswith(b"<FlexQueryResponse")
    assert b'fromDate="20261102"' in report.content and b'toDate="20261120"' in report.content


def test_bad_token_fails_clearly_without_echoing_it(fresh_sandbox: RunningSandbox) -> None:
    with pytest.raises(IbkrAuthError) as excinfo:
        _flex(fresh_sandbox, token="000000000000000000000000").fetch("100001")
    message = str(excinfo.value)
    assert excinfo.value.ibkr_code == "1015" and "Token is invalid" in message and "new Flex token" in message
    assert "000000000000000000000000" not in message


def test_unknown_query_and_max_wait(fresh_sandbox: RunningSandbox) -> None:
    with pytest.raises(IbkrRequestError, match="1014"):
        _flex(fresh_sandbox).fetch("999")
    fresh_sandbox.configure(flex_pending_polls=1000, flex_min_interval=0)
    with pytest.raises(IbkrRequestError, match="not ready after"):
        _flex(fresh_sandbox, max_wait=2.0).fetch("100001")


def test_sandbox_accepts_a_given_flex_token(tmp_path: Path) -> None:
    from ibkr_sandbox.process import start_sandbox

    sandbox = start_sandbox(tmp_path / "sb", "--flex-token", "fixed-demo-token")
    try:
        conn = json.loads(sandbox.flex_connection_json())
        assert conn["password"] == "fixed-demo-token"
        sandbox.configure(flex_pending_polls=0)
        report = FlexClient(token="fixed-demo-token", base_url=conn["host"]).fetch("100001")
        assert len(report.rows("OpenPositions")) == 282
    finally:
        sandbox.stop()


def _flex_hook(monkeypatch: pytest.MonkeyPatch, conn: dict[str, object]) -> IbkrFlexHook:
    from ibkr_provider.hooks.flex import IbkrFlexHook

    monkeypatch.setenv("AIRFLOW_CONN_IBKR_FLEX_TEST", json.dumps(conn))
    return IbkrFlexHook(ibkr_flex_conn_id="ibkr_flex_test")


def test_the_connection_test_asks_ibkr_about_the_token(
    monkeypatch: pytest.MonkeyPatch, fresh_sandbox: RunningSandbox
) -> None:
    """The Test button is green only for a token IBKR accepts: one SendRequest each time."""
    conn = json.loads(fresh_sandbox.flex_connection_json())
    ok, message = _flex_hook(monkeypatch, conn).test_connection()
    assert ok and "token accepted" in message, message
    stats = fresh_sandbox.stats()
    assert stats["flex_send_requests"] == 1 and stats.get("flex_polls", 0) == 0

    ok, message = _flex_hook(monkeypatch, {**conn, "password": "000000000000000000000000"}).test_connection()
    assert not ok and "1015" in message and "Flex token" in message, message
    assert "000000000000000000000000" not in message

    ok, message = _flex_hook(monkeypatch, {**conn, "extra": {"query_id": "100001"}}).test_connection()
    assert ok and "query 100001 accepted" in message, message
    ok, message = _flex_hook(monkeypatch, {**conn, "extra": {"query_id": "999"}}).test_connection()
    assert not ok and "1014" in message, message
    assert fresh_sandbox.stats()["flex_send_requests"] == 4


def test_a_bare_flex_host_gets_the_service_path(
    monkeypatch: pytest.MonkeyPatch, fresh_sandbox: RunningSandbox
) -> None:
    from ibkr_provider.hooks.flex import flex_base_url

    conn = json.loads(fresh_sandbox.flex_connection_json())
    bare = conn["host"].split("/AccountManagement")[0]
    hook = _flex_hook(monkeypatch, {**conn, "host": bare})
    assert hook.get_conn().base_url == conn["host"]
    assert hook.test_connection()[0]
    assert flex_base_url("ndcdyn.interactivebrokers.com") == (
        "https://ndcdyn.interactivebrokers.com/AccountManagement/FlexWebService"
    )
    assert flex_base_url(None) == DEFAULT_FLEX_URL


@pytest.mark.parametrize(
    "elsewhere",
    [
        "https://evil.example",
        "http://ndcdyn.interactivebrokers.com",
        "https://interactivebrokers.com.evil.example",
    ],
)
def test_a_statement_url_elsewhere_never_gets_the_token(
    fresh_sandbox: RunningSandbox, elsewhere: str
) -> None:
    """SendRequest's answer names where to poll; the token goes only to https on the service's
    own host or IBKR's (issue 30). Refused before any GetStatement."""
    from ibkr_provider.client import IbkrResponseError

    fresh_sandbox.configure(flex_statement_base=elsewhere)
    with pytest.raises(IbkrResponseError, match="refusing to send the Flex token there") as excinfo:
        _flex(fresh_sandbox).fetch("100001")
    assert excinfo.value.permanent
    assert fresh_sandbox.stats().get("flex_polls", 0) == 0


def test_an_expired_token_fails_at_once_naming_the_token(fresh_sandbox: RunningSandbox) -> None:
    """1012: IBKR knows the token and says it expired (a new one is needed): no polling, no
    retry, a message that tells which setting to renew."""
    fresh_sandbox.configure(flex_token_expired=True)
    flex = _flex(fresh_sandbox)
    with pytest.raises(IbkrAuthError) as excinfo:
        flex.fetch("100001")
    error = excinfo.value
    assert error.ibkr_code == "1012" and error.permanent
    assert "Flex error 1012: Token has expired." in str(error) and "Generate a new Flex token" in str(error)
    assert "ibkr_flex connection's password" in str(error)
    assert flex._token not in str(error)
    stats = fresh_sandbox.stats()
    assert stats["flex_send_requests"] == 1 and stats.get("flex_polls", 0) == 0
    # and the connection's Test (one SendRequest with the probe query id) says so too
    with pytest.raises(IbkrAuthError, match="Flex error 1012: Token has expired"):
        flex.check_token()


def test_a_flex_watcher_fires_once_per_new_report_period_also_across_a_restart(
    fresh_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``IbkrFlexReportEventTrigger`` polling the sandbox's Flex service: the report of
    2026-12-03 fires once however often it is asked again; the next day's report fires; a
    restarted watcher (same asset state store) does not fire the day it already fired."""
    import asyncio
    import contextlib

    from ibkr_provider.triggers.flex import IbkrFlexReportEventTrigger
    from tests.support.state_store import FakeStateStore

    monkeypatch.setenv("AIRFLOW_CONN_IBKR_FLEX_DEFAULT", fresh_sandbox.flex_connection_json())
    fresh_sandbox.configure(flex_pending_polls=0, flex_min_interval=0.0, flex_report_date="20261203")
    store = FakeStateStore()

    def watcher() -> IbkrFlexReportEventTrigger:
        made = IbkrFlexReportEventTrigger(query_id="100001", poll_interval=0.2, confirm_seconds=0.05)
        made.asset_state_store = store  # type: ignore[assignment]
        return made

    async def events_while(days: list[str], pause: float) -> list[dict[str, object]]:
        got: list[dict[str, object]] = []
        events = watcher().run()

        async def take() -> None:
            async for event in events:
                got.append(dict(event.payload))

        taking = asyncio.ensure_future(take())
        for day in days:
            await asyncio.sleep(pause)
            await asyncio.to_thread(fresh_sandbox.configure, flex_report_date=day)
        await asyncio.sleep(pause)
        taking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await taking
        await events.aclose()
        return got

    fired = asyncio.run(events_while(["20261204"], 1.5))
    assert [(e["from_date"], e["to_date"]) for e in fired] == [
        ("20261203", "20261203"),
        ("20261204", "20261204"),
    ]
    assert fired[0]["accounts"] == ["DU1234567", "DU2345678", "U3456789"]
    assert fired[0]["rows"] == {"CashReport": 3, "OpenPositions": 282, "Trades": 0}
    assert fresh_sandbox.stats()["flex_send_requests"] >= 4  # asked again, fired once per day
    assert store.values["flex_period:100001"] == "20261204-20261204"
    assert asyncio.run(events_while([], 1.0)) == []  # the restart: the same day fires nothing
