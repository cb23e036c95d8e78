"""Starting the sandbox as the scripts do (``ibkr_sandbox.process.start_sandbox``): a start that
is interrupted leaves no sandbox behind. `make up` and `make cluster` stop on SIGTERM and Ctrl-C
from their first line (scripts/local_airflow.py, stop_on_interrupts), so the interruption can
come while the sandbox is still starting, before the script holds one to stop."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from ibkr_sandbox import process

from tests.support.scripts import command_line


class _CtrlCWhileWaiting:
    """The clock ``start_sandbox`` waits by: its first pause is interrupted."""

    monotonic = staticmethod(time.monotonic)

    @staticmethod
    def sleep(seconds: float) -> None:
        raise KeyboardInterrupt


def test_an_interrupted_start_leaves_no_sandbox_running(
    sandbox_state: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    state_dir = sandbox_state("interrupted")
    monkeypatch.setattr(process, "time", _CtrlCWhileWaiting)
    with pytest.raises(KeyboardInterrupt):
        process.start_sandbox(state_dir)
    left = [child for child in psutil.Process().children() if str(state_dir) in command_line(child)]
    for leftover in left:  # stopped by the test that started it, also when it fails
        leftover.kill()
        leftover.wait(timeout=10)
    assert not left, f"a sandbox outlived its interrupted start: {[c.pid for c in left]}"
