"""Driving Connect IBKR in a browser as a person does: the page in Airflow's frame, a consent
started from a profile, the sandbox's login page, a forged redirect."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from ibkr_sandbox.files import AUTHORIZE_PASSWORD
from playwright.sync_api import FrameLocator, Page, Route, expect


def shot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"))


def connect_frame(page: Page) -> FrameLocator:
    """The Connect IBKR page inside Airflow's frame (``/plugin/ibkr_connect``)."""
    frame = page.frame_locator("iframe")
    expect(frame.get_by_role("heading", name="Connect IBKR")).to_be_visible()
    assert urlsplit(page.url).path.startswith("/plugin/ibkr_connect")
    return frame


def open_connect_page(page: Page, url: str) -> FrameLocator:
    """Through the nav of the page the UI is on, as a person finds it: Admin, then Connect IBKR,
    shown in Airflow's frame, saying whom it is for and each connection's tested state."""
    page.get_by_role("button", name="Admin").click()
    page.get_by_role("menuitem", name="Connect IBKR").click()
    frame = connect_frame(page)
    expect(frame.get_by_text("third-party consumers")).to_be_visible()
    return frame


def back_to_connect_page(page: Page) -> FrameLocator:
    """The Connect IBKR link every other page of it carries: back to Airflow's frame."""
    page.get_by_role("link", name="Connect IBKR").click()
    return connect_frame(page)


def start(page: Page, frame: FrameLocator, conn_id: str, profile: str | None = None) -> None:
    """From the Connect IBKR page in Airflow's frame: pick the profile (default: the first one),
    name the connection and go to IBKR's login, which opens in the whole window (IBKR's login page
    is never framed)."""
    if profile is not None:
        frame.get_by_label("Consumer profile").select_option(profile)
    frame.get_by_label("Save the connection as").fill(conn_id)
    frame.get_by_role("button", name="Connect IBKR").click()
    expect(page.get_by_role("heading", name="IBKR sandbox login")).to_be_visible()


def sign_in(page: Page, password: str = AUTHORIZE_PASSWORD, username: str = "sandboxuser") -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)


def forge_state(route: Route) -> None:
    """The authorization server's redirect back, with the state changed on the way (a forged
    link)."""
    answer = route.fetch(max_redirects=0)
    target = urlsplit(answer.headers["location"])
    forged = target._replace(query=target.query.replace("state=", "state=x", 1)).geturl()
    route.fulfill(status=303, headers={"Location": forged})
