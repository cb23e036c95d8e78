"""A person answering an IBKR approval request in Airflow's UI (Browse > Required Actions), and
the checks that follow: what the sandbox placed and what the trade journal holds."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.support.airflow_api import Api


def wait_for_task_state(
    api: Api, dag_id: str, run_id: str, task_id: str, states: set[str], seconds: float
) -> str:
    """Poll the task's state until it is one of ``states``."""
    deadline = time.monotonic() + seconds
    while True:
        state = str(api.task_instance(dag_id, run_id, task_id)["state"])
        if state in states:
            return state
        assert time.monotonic() < deadline, f"{dag_id} {run_id} {task_id} still {state} after {seconds} s"
        time.sleep(0.5)


def wait_until_parked(
    scheduler_log: Path, run_id: str, task_id: str = "approve", seconds: float = 120
) -> None:
    """Wait until the scheduler has taken the executor's report of the paused task process.

    Airflow 3.3 race (seen here at a response 1 s after the request appeared): an answer that
    resumes the task before the scheduler has processed that report makes the scheduler read the
    process's "success" against a task already queued again, and it puts the task up for retry,
    which asks again. A person never answers that fast; a test waits for the scheduler's
    ``TaskInstance Finished: ... state=awaiting_input`` line first."""
    line = re.compile(
        rf"TaskInstance Finished: dag_id=\S+, task_id={re.escape(task_id)}, run_id={re.escape(run_id)},"
        r".*state=awaiting_input"
    )
    deadline = time.monotonic() + seconds
    while not line.search(scheduler_log.read_text(errors="replace")):
        assert time.monotonic() < deadline, (
            f"the scheduler did not see {task_id} of {run_id} park in {seconds} s"
        )
        time.sleep(0.5)


def answer_in_the_ui(page: Page, run_id: str, option: str, shot: Path | None = None) -> dict[str, Any]:
    """Browse > Required Actions, the request of ``run_id`` opened from its subject, the plan read
    (a screenshot to ``shot``), then ``option`` pressed: the UI's own request must succeed."""
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Required Actions").click()
    row = page.locator("tr", has=page.get_by_text(run_id, exact=True))
    row.get_by_role(
        "link", name="Approve", exact=False
    ).first.click()  # the subject: "Approve 2 IBKR order(s) ..."
    expect(page.get_by_text("exactly these orders are placed after Approve")).to_be_visible()
    expect(page.get_by_text("IBKR's what-if per order:")).to_be_visible()
    if shot is not None:
        page.screenshot(path=str(shot), full_page=True)
    with page.expect_response(lambda r: "hitlDetails" in r.url and r.request.method == "PATCH") as answer:
        page.get_by_role("button", name=option, exact=True).click()
    assert answer.value.status == 200, answer.value.text()
    sent: dict[str, Any] = answer.value.json()
    assert sent["chosen_options"] == [option] and sent["responded_by"]["name"] == "admin", sent
    return sent


def journal_of(db: Path, run_id: str) -> list[tuple[Any, ...]]:
    """(kind, actor, coid, symbol, quantity, price, commission, payload) of one run's rows."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT kind, actor, coid, symbol, quantity, price, commission, payload FROM ibkr_trade_journal "
            "WHERE run_id = ? ORDER BY id",
            (run_id,),
        ).fetchall()
