"""Connect IBKR in a real browser: Airflow's api-server with the provider's plugin, the sandbox in
OAuth 1.0a mode with a registered third-party consumer, chromium logged in as Airflow's admin.

Accept: Admin > Connect IBKR, Connect, sign in and Allow on the sandbox's authorize page, land back
on the result with the accounts; the new connection's row Test succeeds; the same callback again
is refused. Deny: a readable message and no connection. A tampered state: refused, no connection.
No request token, verifier or access token reaches the api-server's log. Screenshots of each step
land in the test's tmp directory, or in ``$IBKR_UI_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests
from ibkr_sandbox.files import AUTHORIZE_PASSWORD
from ibkr_sandbox.process import RunningSandbox
from playwright.sync_api import Page, Route, expect

from tests.support.airflow_cli import REPO_ROOT
from tests.support.airflow_cluster import airflow_cluster
from tests.support.browser import browser_page, log_in


def _api(url: str, home: Path) -> dict[str, str]:
    password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    token = requests.post(f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=30)
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def _open_connect_page(page: Page, url: str) -> None:
    """Through the nav, as a person finds it: Admin, then Connect IBKR."""
    page.goto(f"{url}/")
    page.get_by_role("button", name="Admin").click()
    link = page.get_by_role("menuitem", name="Connect IBKR")
    expect(link).to_be_visible()
    href = link.get_attribute("href") or link.locator("a").first.get_attribute("href")
    assert href and href.endswith("/ibkr/connect")
    page.goto(href if href.startswith("http") else f"{url}{href}")
    expect(page.get_by_role("heading", name="Connect IBKR")).to_be_visible()


def _start(page: Page, url: str, conn_id: str) -> None:
    _open_connect_page(page, url)
    page.get_by_label("Save the connection as").fill(conn_id)
    page.get_by_role("button", name="Connect IBKR").click()
    expect(page.get_by_role("heading", name="IBKR sandbox login")).to_be_visible()


def _sign_in(page: Page, password: str = AUTHORIZE_PASSWORD) -> None:
    page.get_by_label("Username").fill("sandboxuser")
    page.get_by_label("Password").fill(password)


def test_connect_ibkr_accept_deny_and_tampered_state(
    tmp_path: Path, fresh_oauth1_sandbox: RunningSandbox, fresh_airflow_home: Path
) -> None:
    shots = Path(os.environ.get("IBKR_UI_SCREENSHOTS") or tmp_path / "screens")
    shots.mkdir(parents=True, exist_ok=True)
    home = fresh_airflow_home
    sandbox = fresh_oauth1_sandbox
    with airflow_cluster(
        home, REPO_ROOT / "tests" / "support" / "dags", AIRFLOW__CORE__TEST_CONNECTION="Enabled"
    ) as env:
        url = f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}"
        auth = _api(url, home)
        profile = json.loads(sandbox.consumer_profile_json())
        body = {**profile, "connection_id": "ibkr_consumer", "extra": json.dumps(profile["extra"])}
        created = requests.post(f"{url}/api/v2/connections", json=body, headers=auth, timeout=30)
        assert created.status_code == 201, created.text
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]

        with browser_page() as page:
            log_in(page, url, "admin", password)

            # Accept: the connection is saved, tested and its accounts shown.
            _start(page, url, "ibkr_connected")
            page.screenshot(path=str(shots / "connect-ibkr-sandbox-login.png"))
            _sign_in(page)
            with page.expect_response(lambda r: "/ibkr/connect/callback" in r.url) as landed:
                page.get_by_role("button", name="Allow").click()
            callback_url = landed.value.url
            expect(page.get_by_role("heading", name="IBKR connected")).to_be_visible()
            status = page.get_by_role("status")
            expect(status).to_contain_text("Test succeeded")
            expect(status).to_contain_text("DU1234567 (paper)")
            expect(status).to_contain_text("U3456789 (live)")
            page.screenshot(path=str(shots / "connect-ibkr-result.png"))
            query = parse_qs(urlsplit(callback_url).query)
            request_token, verifier = query["oauth_token"][0], query["oauth_verifier"][0]
            assert request_token not in page.content() and verifier not in page.content()

            # The same callback again (a replay): refused, nothing changes.
            replay = page.goto(callback_url)
            assert replay is not None and replay.status == 400
            expect(page.get_by_role("alert")).to_contain_text("no longer valid")

            # The new connection is a normal IBKR connection: its row's Test succeeds.
            page.goto(f"{url}/connections")
            row = page.locator("tr", has=page.get_by_text("ibkr_connected", exact=True)).first
            with page.expect_response(lambda r: r.url.endswith("/api/v2/connections/test")) as tested:
                row.get_by_role("button", name="Test Connection").click()
            assert tested.value.status == 200 and tested.value.json()["status"] is True, tested.value.text()
            expect(page.get_by_text("Test Connection Successful").first).to_be_visible()

            # Deny: a readable page, no connection.
            _start(page, url, "ibkr_denied")
            page.get_by_role("button", name="Deny").click()
            expect(page.get_by_role("alert")).to_contain_text("You declined at IBKR")
            page.screenshot(path=str(shots / "connect-ibkr-denied.png"))

            # A tampered state on the way back: refused, no connection.
            _start(page, url, "ibkr_tampered")
            _sign_in(page)

            def tamper(route: Route) -> None:
                """IBKR's redirect back, with the state changed on the way (a forged link)."""
                answer = route.fetch(max_redirects=0)
                target = urlsplit(answer.headers["location"])
                forged = target._replace(query=target.query.replace("state=", "state=x", 1)).geturl()
                route.fulfill(status=303, headers={"Location": forged})

            page.route("**/authorize", tamper)
            page.get_by_role("button", name="Allow").click()
            expect(page.get_by_role("alert")).to_contain_text("not started in this browser")
            page.unroute("**/authorize")

            # A form posted without this page's CSRF token is refused; nobody logged in gets nothing.
            forged = requests.post(
                f"{url}/ibkr/connect/disconnect", data={"conn_id": "ibkr_connected"}, headers=auth, timeout=30
            )
            assert forged.status_code == 403 and "did not come from this page" in forged.text
            assert requests.get(f"{url}/ibkr/connect", timeout=30).status_code == 401

            # Disconnect, after a confirmation: the access token and its secret are gone.
            _open_connect_page(page, url)
            expect(page.get_by_role("cell", name="connected by admin")).to_be_visible()
            page.get_by_role("link", name="Disconnect").click()
            page.get_by_role("button", name="Disconnect").click()
            expect(page.get_by_text("Disconnected ibkr_connected")).to_be_visible()

        for conn_id, exists in (("ibkr_connected", True), ("ibkr_denied", False), ("ibkr_tampered", False)):
            got = requests.get(f"{url}/api/v2/connections/{conn_id}", headers=auth, timeout=30)
            assert (got.status_code == 200) is exists, (conn_id, got.status_code)
        saved = requests.get(f"{url}/api/v2/connections/ibkr_connected", headers=auth, timeout=30).json()
        assert saved["login"] == profile["login"] and saved["password"] is None
        assert "access_token" not in json.loads(saved["extra"])  # disconnected

    stats = sandbox.stats()
    assert stats["request_tokens"] == 3 and stats["access_tokens"] == 1, stats
    assert stats["consents_accepted"] == 2 and stats["consents_denied"] == 1, stats
    server_log = (home / "api-server.log").read_text()
    assert "/ibkr/connect/callback" in server_log  # the access log saw the callbacks...
    for secret in (request_token, verifier):
        assert secret not in server_log  # ...with the token and verifier masked
