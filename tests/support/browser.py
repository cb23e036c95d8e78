"""A real browser for the UI tests: Debian's chromium driven by playwright.

playwright cannot download its own browsers here, so it launches the system's: Debian's
``chromium-headless-shell`` (``make test`` installs it when missing), the same Chromium without
the browser's own UI layer, which is what playwright runs headless when it brings its own. A full
``chromium`` serves where the headless shell is missing. Both get the flags a closed network
needs: without the background-networking ones chromium keeps dialling Google's hosts and logs
refused connections.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

UI_TIMEOUT_MS = 90_000

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: Airflow's UI keeps an indeterminate progress bar (Chakra's, "loading...") in every page, hidden
#: with ``visibility: hidden`` once loaded, and its CSS animation runs on regardless: 60 style
#: recalculations and layouts a second, which a headless chromium without a GPU paints in software.
#: Measured on an idle connections page: 1.6-1.8 CPU-s of the renderer and 0.25-0.3 of the GPU
#: process per 20 s, against 0.3 and 0.01 with the animation paused. Paused, the bar looks the same
#: hidden and stands still shown; nothing a test checks moves with it.
PAUSE_INDETERMINATE_PROGRESS = """
document.addEventListener("DOMContentLoaded", () => {
  const style = document.createElement("style");
  style.textContent =
    "[data-scope=progress][data-state=indeterminate] * { animation-play-state: paused !important; }";
  document.head.appendChild(style);
});
"""


#: The headless shell first. It renders Airflow's pages the same (`make up`'s test's screenshots of
#: the connection forms came out byte for byte identical; only the sandbox's unstyled login page
#: drew its native buttons a pixel apart), and in that test alone it cost 56.0 and 58.6 CPU-s
#: against the full chromium's 68.3 and 69.5 (alternated, 2026-12-06).
BROWSERS = ("chromium-headless-shell", "chromium")


def chromium_executable() -> tuple[str, list[str]]:
    """The browser to launch and the arguments it needs: the full chromium runs headless only
    with ``--headless=new`` (its old headless mode is the separate shell)."""
    for name in BROWSERS:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found is not None:
            return found, CHROMIUM_ARGS if name == BROWSERS[0] else ["--headless=new", *CHROMIUM_ARGS]
    pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium-headless-shell)")


@contextmanager
def browser_page(failure_shot: Path, width: int = 1400, height: int = 1000) -> Iterator[Page]:
    """A fresh browser profile and one page; the browser is closed on exit. When the block
    fails, the page as it was is saved to ``failure_shot``, named in the test's captured stderr."""
    with sync_playwright() as playwright:
        executable, args = chromium_executable()
        browser = playwright.chromium.launch(executable_path=executable, args=args)
        try:
            page = new_person_page(browser, width, height)
            # A loaded two-core CI machine can take tens of seconds to render Airflow's pages;
            # playwright's assertions wait 5 s by default (its actions 30 s: new_person_page).
            expect.set_options(timeout=UI_TIMEOUT_MS)
            try:
                yield page
            except BaseException:
                try:
                    page.screenshot(path=str(failure_shot), full_page=True)
                    note = f"screenshot of the page at the failure: {failure_shot} (url {page.url})"
                except Exception as shot_error:  # the page itself may be gone
                    note = f"no screenshot: {shot_error}"
                sys.stderr.write(note + "\n")  # pytest shows it with the failure
                raise
        finally:
            browser.close()


def new_person_page(browser: Browser, width: int = 1400, height: int = 1000) -> Page:
    """A page in a browser context of its own (its own cookies: another person's login), set up
    as every page of the UI tests is: reduced motion, as the OS setting (the UI skips its
    animations, which a headless chromium without a GPU otherwise paints in software frame by
    frame), the progress bar's animation paused, and :data:`UI_TIMEOUT_MS` for every action."""
    page = browser.new_page(viewport={"width": width, "height": height}, reduced_motion="reduce")
    page.context.add_init_script(PAUSE_INDETERMINATE_PROGRESS)
    page.set_default_timeout(UI_TIMEOUT_MS)
    return page


def log_in(page: Page, url: str, username: str, password: str) -> None:
    """Airflow's simple auth manager login form, as a person fills it."""
    page.goto(url)
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(password)
    page.keyboard.press("Enter")
    expect(page.get_by_role("link", name="Dags").first).to_be_visible()
