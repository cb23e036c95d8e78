"""Connect IBKR through OAuth 2.0 authorization code, in chromium, as people do it (issue 24):
admin connects their IBKR login from the app profile ``ibkr_oauth2_app``; a denied consent, a
forged state, an expired code and a PKCE challenge swapped on the way each end on a readable
page with no connection; a second Airflow user connects a second IBKR login through the same
profile, and neither can take the other's connection; a refresh token replayed by a third party
revokes the grant, and the owner's Connect page asks for a new consent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests
from ibkr_sandbox.files import PRIVATE_KEY_FILE
from ibkr_sandbox.seed import SANDBOX_CLIENT_ID, SANDBOX_KEY_ID
from playwright.sync_api import Page, Route, expect

from tests.support.browser import log_in, new_person_page
from tests.support.connect_ui import (
    back_to_connect_page,
    forge_state,
    open_connect_page,
    shot,
    sign_in,
    start,
)
from tests.support.scripts import user_env

APP = "ibkr_oauth2_app"
ADMINS = "ibkr_oauth2_admin"
TRADERS = "ibkr_oauth2_trader2"
#: Consents that must leave no connection behind.
REFUSED = ("ibkr_oauth2_denied", "ibkr_oauth2_forged", "ibkr_oauth2_expired", "ibkr_oauth2_pkce")


def _configure(sandbox_url: str, **settings: object) -> None:
    requests.post(f"{sandbox_url}/__sandbox__/config", json=settings, timeout=30).raise_for_status()


def _refused_exchange(page: Page, text: str) -> None:
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("alert")).to_contain_text("IBKR refused the code exchange")
    expect(page.get_by_role("alert")).to_contain_text(text)


def _swap_challenge(route: Route) -> None:
    """Someone on the way replaces the PKCE challenge in Connect IBKR's redirect to the
    authorize page with theirs (a route sees only the first request of a redirect chain)."""
    answer = route.fetch(max_redirects=0)
    target = urlsplit(answer.headers["location"])
    query = target.query.replace("code_challenge=", "code_challenge=" + "A" * 43 + "x", 1)
    route.fulfill(
        response=answer, headers={**answer.headers, "location": target._replace(query=query).geturl()}
    )


def connect_as_admin(page: Page, url: str, auth: dict[str, str], shots: Path, sandbox_url: str) -> str:
    """Admin's consent and the refused ones; returns the accepted consent's code (for the log
    scan)."""
    frame = open_connect_page(page, url)
    app = frame.locator("tr", has=frame.get_by_text(APP, exact=True))
    expect(app).to_contain_text("OAuth 2.0 app profile")
    start(page, frame, ADMINS, APP)
    assert urlsplit(page.url).path == "/oauth2/authorize"  # the authorization server's own page
    sign_in(page)
    with page.expect_response(lambda r: "/ibkr/connect/callback" in r.url) as landed:
        page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("heading", name="IBKR connected")).to_be_visible()
    status = page.get_by_role("status")
    expect(status).to_contain_text("Test succeeded")
    # the same IBKR user as ibkr_default, whose brokerage session the DAGs use: left alone
    expect(status).to_contain_text("ibkr_default")
    shot(page, shots, "connect-ibkr-oauth2-result")
    callback = landed.value.url
    code = parse_qs(urlsplit(callback).query)["code"][0]
    assert code not in page.content()
    replay = page.goto(callback)  # the code again: the finished consent's state cookie is gone
    assert replay is not None and replay.status == 400
    expect(page.get_by_role("alert")).to_contain_text("not started in this browser")

    frame = back_to_connect_page(page)
    start(page, frame, "ibkr_oauth2_denied", APP)
    page.get_by_role("button", name="Deny").click()
    expect(page.get_by_role("alert")).to_contain_text("You declined at IBKR")

    frame = back_to_connect_page(page)
    start(page, frame, "ibkr_oauth2_forged", APP)
    sign_in(page)
    page.route("**/authorize", forge_state)
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("alert")).to_contain_text("not started in this browser")
    page.unroute("**/authorize")

    _configure(sandbox_url, code_lifetime=0)  # every code has expired by the time it is exchanged
    frame = back_to_connect_page(page)
    start(page, frame, "ibkr_oauth2_expired", APP)
    sign_in(page)
    _refused_exchange(page, "expired")
    _configure(sandbox_url, code_lifetime=60)

    frame = back_to_connect_page(page)
    page.route("**/ibkr/connect/start", _swap_challenge)
    start(page, frame, "ibkr_oauth2_pkce", APP)
    page.unroute("**/ibkr/connect/start")
    sign_in(page)
    _refused_exchange(page, "PKCE")

    for conn_id in REFUSED:
        got = requests.get(f"{url}/api/v2/connections/{conn_id}", headers=auth, timeout=30)
        assert got.status_code == 404, (conn_id, got.status_code)
    saved = requests.get(f"{url}/api/v2/connections/{ADMINS}", headers=auth, timeout=30).json()
    kept = json.loads(saved["extra"])
    assert kept["consumer_profile"] == APP and kept["auth_type"] == "oauth2" and kept["refresh_token"]

    # Disconnect: the session logged out, the grant revoked at the authorization server (RFC 7009)
    frame = back_to_connect_page(page)
    row = frame.locator("tr", has=frame.get_by_text(ADMINS, exact=True))
    expect(row).to_contain_text("connected and tested")
    row.get_by_role("link", name="Disconnect").click()
    frame.get_by_role("button", name="Disconnect").click()
    expect(frame.get_by_text("its grant is revoked at IBKR")).to_be_visible()
    expect(row).to_contain_text("token missing")
    stats = requests.get(f"{sandbox_url}/__sandbox__/stats", timeout=30).json()
    assert stats["revocations"] == 1, stats
    saved = requests.get(f"{url}/api/v2/connections/{ADMINS}", headers=auth, timeout=30).json()
    kept = json.loads(saved["extra"])
    assert "refresh_token" not in kept and kept["consumer_profile"] == APP
    assert (
        "PRIVATE KEY" not in saved["extra"] and "BEGIN" not in saved["extra"]
    )  # the app's key stays in the profile
    return code


def connect_as_trader2(page: Page, url: str, home: Path, shots: Path, sandbox_url: str) -> Page:
    """trader2, in a browser context of their own, connects sandboxuser2 through the same app
    profile; neither user is shown or may name the other's connection. Returns trader2's page."""
    # user grants' access tokens live a minute: the snapshot run later renews one (issue 24)
    _configure(sandbox_url, user_token_lifetime=60)
    password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["trader2"]
    browser = page.context.browser
    assert browser is not None
    other = new_person_page(browser)
    log_in(other, url, "trader2", password)
    frame = open_connect_page(other, url)
    expect(frame.get_by_text(ADMINS, exact=True)).to_have_count(0)  # admin's: not listed to trader2
    frame.get_by_label("Consumer profile").select_option(APP)
    frame.get_by_label("Save the connection as").fill(ADMINS)
    frame.get_by_role("button", name="Connect IBKR").click()
    expect(other.get_by_role("alert")).to_contain_text("not a connection Connect IBKR made for you")
    frame = back_to_connect_page(other)
    start(other, frame, TRADERS, APP)
    sign_in(other, username="sandboxuser2")
    other.get_by_role("button", name="Allow").click()
    expect(other.get_by_role("heading", name="IBKR connected")).to_be_visible()
    expect(other.get_by_role("status")).to_contain_text("DU2345678")
    shot(other, shots, "connect-ibkr-oauth2-second-user")

    # admin: trader2's connection is neither listed nor theirs to name
    frame = open_connect_page(page, url)
    expect(frame.get_by_text(ADMINS, exact=True)).to_have_count(1)
    expect(frame.get_by_text(TRADERS, exact=True)).to_have_count(0)
    frame.get_by_label("Consumer profile").select_option(APP)
    frame.get_by_label("Save the connection as").fill(TRADERS)
    frame.get_by_role("button", name="Connect IBKR").click()
    expect(page.get_by_role("alert")).to_contain_text("not a connection Connect IBKR made for you")
    back_to_connect_page(page)
    return other


def replay_the_first_refresh_token(home: Path, sandbox_dir: Path, sandbox_url: str) -> None:
    """A third party replays the refresh token Connect IBKR saved (spent long ago): the
    authorization server revokes the whole grant."""
    from ibkr_provider.client.auth.jwt_signing import AssertionSigner

    command = [str(Path(sys.executable).parent / "airflow"), "connections", "get", TRADERS, "-o", "json"]
    done = subprocess.run(
        command, env=user_env(AIRFLOW_HOME=str(home)), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (conn,) = json.loads(done.stdout)
    extra = conn["extra_dejson"] if isinstance(conn.get("extra_dejson"), dict) else json.loads(conn["extra"])
    token_url = f"{sandbox_url}/oauth2/api/v1/token"
    signer = AssertionSigner(
        client_id=SANDBOX_CLIENT_ID,
        key_id=SANDBOX_KEY_ID,
        private_key_pem=(sandbox_dir / PRIVATE_KEY_FILE).read_text(),
    )
    replayed = requests.post(
        token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": extra["refresh_token"],
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": signer.client_assertion(token_url),
        },
        timeout=30,
    )
    assert replayed.status_code == 400 and "whole grant is revoked" in replayed.text, replayed.text


def asks_for_consent_again(other: Page) -> None:
    """trader2's Connect page says their connection needs a new consent."""
    frame = back_to_connect_page(other)
    row = frame.locator("tr", has=frame.get_by_text(TRADERS, exact=True))
    expect(row).to_contain_text("needs consent again")
    expect(row).to_contain_text("Connect IBKR")
