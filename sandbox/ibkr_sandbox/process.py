"""Start and stop a sandbox in a child process, for tests (yours too) and the demo.

Example::

    from ibkr_sandbox.process import start_sandbox

    sandbox = start_sandbox(Path("/tmp/ibkr-sandbox"))
    try:
        os.environ["AIRFLOW_CONN_IBKR_DEFAULT"] = sandbox.connection_json()
        ...
    finally:
        sandbox.stop()
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from ibkr_sandbox.connections import (
    CONN_FILE,
    CONSUMER_PROFILE_FILE,
    FLEX_CONN_FILE,
    OAUTH2_PROFILE_FILE,
    READY_FILE,
)
from ibkr_sandbox.files import CA_FILE


@dataclass
class RunningSandbox:
    """A sandbox child process and where to reach it."""

    base_url: str
    state_dir: Path
    process: subprocess.Popen[bytes]
    gateway: bool
    #: ``start_sandbox``'s extra arguments and host, for :meth:`restart`.
    extra_args: tuple[str, ...] = ()
    host: str = "127.0.0.1"

    @property
    def connection(self) -> dict[str, Any]:
        """The generated Airflow connection (JSON form) for this sandbox."""
        loaded: dict[str, Any] = json.loads((self.state_dir / CONN_FILE).read_text())
        return loaded

    def connection_json(self, **extra_overrides: Any) -> str:
        """The connection as ``AIRFLOW_CONN_*`` JSON, with extra fields overridden (None drops one)."""
        conn = self.connection
        merged = {**conn["extra"], **extra_overrides}
        conn["extra"] = {k: v for k, v in merged.items() if v is not None}
        return json.dumps(conn)

    def flex_connection_json(self, **overrides: Any) -> str:
        """The ``ibkr_flex`` connection (JSON form) for this sandbox's Flex Web Service."""
        conn: dict[str, Any] = json.loads((self.state_dir / FLEX_CONN_FILE).read_text())
        conn.update(overrides)
        return json.dumps(conn)

    def consumer_profile_json(self) -> str:
        """The third-party consumer profile (JSON form) Connect IBKR starts from (not in gateway mode)."""
        return (self.state_dir / CONSUMER_PROFILE_FILE).read_text()

    def oauth2_profile_json(self) -> str:
        """The OAuth 2.0 app profile (JSON form) Connect IBKR's authorization-code consent starts
        from (not in gateway mode)."""
        return (self.state_dir / OAUTH2_PROFILE_FILE).read_text()

    def client_config_values(self, **overrides: Any) -> dict[str, Any]:
        """Settings for :meth:`IbkrClientConfig.from_mapping` pointing at this sandbox."""
        conn = self.connection
        values = {"base_url": conn["host"], "client_id": conn["login"], "password": conn.get("password")}
        return {**values, **conn["extra"], **overrides}

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        verify: bool | str = str(self.state_dir / CA_FILE) if self.gateway else True
        response = requests.request(
            method, f"{self.base_url}/__sandbox__/{path}", json=body, timeout=10, verify=verify
        )
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        """The sandbox's request counters (``GET /__sandbox__/stats``)."""
        stats: dict[str, Any] = self._control("GET", "stats")
        return stats

    def reset(self) -> None:
        """Restore seeded state and zero the counters (``POST /__sandbox__/reset``)."""
        self._control("POST", "reset")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change behaviour at run time (``POST /__sandbox__/config``); ``reset()`` restores it."""
        applied: dict[str, Any] = self._control("POST", "config", settings)
        return applied

    def inject_fault(self, path: str, kind: str, count: int = 1, **options: Any) -> None:
        """Make the next ``count`` requests to ``path`` fail (``POST /__sandbox__/faults``)."""
        self._control("POST", "faults", {"path": path, "kind": kind, "count": count, **options})

    def ws_fault(self, fault: str, code: int = 1011, reason: str = "") -> int:
        """Do ``fault`` (drop, silence, malformed, close) to every open websocket; returns how
        many (``POST /__sandbox__/ws``)."""
        answer: dict[str, int] = self._control("POST", "ws", {"fault": fault, "code": code, "reason": reason})
        return answer["sockets"]

    def set_price(self, conid: int, price: float, after: float = 0.0) -> None:
        """Move an instrument's price, now or ``after`` seconds (resting limit orders fill when it
        crosses their limit)."""
        self._control("POST", "prices", {"conid": conid, "price": price, "after": after})

    def market(self, *conids: int) -> dict[str, Any]:
        """The current tick and prices, ``{"tick": n, "prices": {"conid": price}}``."""
        query = ",".join(str(c) for c in conids)
        answer: dict[str, Any] = self._control("GET", f"market?conids={query}")
        return answer

    def step_market(self, ticks: int) -> int:
        """Move the price model ``ticks`` ticks ahead now; returns the new tick."""
        tick: int = self._control("POST", "market", {"ticks": ticks})["tick"]
        return tick

    def lst_signatures(self) -> list[str]:
        """OAuth 1.0a: the ``oauth_signature`` of each live-session-token request received."""
        signatures: list[str] = self._control("GET", "oauth1/signatures")
        return signatures

    def set_account_kind(self, account_id: str, *, paper: bool) -> None:
        """Report ``account_id`` as paper or live from now on (``reset()`` restores the seed)."""
        self._control("POST", f"accounts/{account_id}/kind", {"paper": paper})

    def drop_brokerage_sessions(self) -> None:
        """Drop every brokerage session, keeping the SSO sessions."""
        self._control("POST", "sessions/drop-brokerage")

    def expire_live_session_tokens(self) -> None:
        """OAuth 1.0a mode: make every current live session token invalid (the next request
        signed with one answers 410 Gone)."""
        self._control("POST", "oauth1/expire-lst")

    def expire_sessions(self) -> int:
        """End every session and access token, as when IBKR logs everyone out; returns how many
        sessions ended (``POST /__sandbox__/sessions/expire``)."""
        ended: int = self._control("POST", "sessions/expire")["ended"]
        return ended

    def orders(self) -> list[dict[str, Any]]:
        """Every order held, with its ``coid`` (``GET /__sandbox__/orders``)."""
        orders: list[dict[str, Any]] = self._control("GET", "orders")
        return orders

    def restart(self) -> RunningSandbox:
        """Stop the sandbox and start it again on the same port with the same arguments (with
        ``--persist`` among them, IBKR-side state survives: :mod:`ibkr_sandbox.persist`)."""
        self.stop()
        port = self.base_url.rsplit(":", 1)[1].split("/")[0]
        return start_sandbox(
            self.state_dir, *self.extra_args, "--port", port, gateway=self.gateway, host=self.host
        )

    def stop(self) -> None:
        """Terminate the child process (SIGTERM, then SIGKILL after 10 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_sandbox(
    state_dir: Path, *extra_args: str, gateway: bool = False, host: str = "127.0.0.1", timeout: float = 30.0
) -> RunningSandbox:
    """Launch ``ibkr-sandbox serve`` on a free port of ``host`` and wait until it listens.

    The child's output goes to ``state_dir/sandbox.log``.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    ready = state_dir / READY_FILE
    ready.unlink(missing_ok=True)
    args = [
        sys.executable,
        "-m",
        "ibkr_sandbox.cli",
        "serve",
        "--host",
        host,
        "--port",
        "0",
        "--state-dir",
        str(state_dir),
        *extra_args,
    ]
    if gateway:
        args.append("--gateway")
    with open(state_dir / "sandbox.log", "ab") as log:
        # Our own interpreter running our own module: no untrusted input reaches the command.
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))  # noqa: S603
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = (state_dir / "sandbox.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the sandbox exited during start-up: {tail}")
            if ready.exists():
                info = json.loads(ready.read_text())
                if info.get("pid") == process.pid:
                    return RunningSandbox(info["base_url"], state_dir, process, gateway, extra_args, host)
            time.sleep(0.1)
        raise RuntimeError(f"the sandbox did not start within {timeout:g} s; see {state_dir / 'sandbox.log'}")
    except BaseException:
        # a start that fails or is interrupted (Ctrl-C, a SIGTERM turned into KeyboardInterrupt)
        # leaves no sandbox behind: the caller never got one to stop
        process.kill()
        process.wait(timeout=10)
        raise
