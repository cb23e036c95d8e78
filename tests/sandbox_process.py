"""Start and stop a real sandbox process (``ibkr-sandbox serve``) on a free loopback port."""

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


@dataclass
class RunningSandbox:
    base_url: str
    state_dir: Path
    process: subprocess.Popen[bytes]
    gateway: bool

    @property
    def connection(self) -> dict[str, Any]:
        """The generated Airflow connection (JSON form) for this sandbox."""
        return json.loads((self.state_dir / "airflow_conn_ibkr_default.json").read_text())

    def connection_json(self, **extra_overrides: Any) -> str:
        conn = self.connection
        conn["extra"] = {**conn["extra"], **extra_overrides}
        return json.dumps(conn)

    def client_config_values(self, **overrides: Any) -> dict[str, Any]:
        conn = self.connection
        return {"base_url": conn["host"], "client_id": conn["login"], **conn["extra"], **overrides}

    def _verify(self) -> bool | str:
        return str(self.state_dir / "gateway_ca.pem") if self.gateway else True

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.base_url}/__sandbox__/stats", timeout=10, verify=self._verify()).json()

    def reset(self) -> None:
        requests.post(f"{self.base_url}/__sandbox__/reset", timeout=10, verify=self._verify()).raise_for_status()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_sandbox(state_dir: Path, *extra_args: str, gateway: bool = False, timeout: float = 30.0) -> RunningSandbox:
    """Launch the sandbox on 127.0.0.1 with a free port and wait until it answers."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ready = state_dir / "sandbox.json"
    ready.unlink(missing_ok=True)
    args = [sys.executable, "-m", "ibkr_provider.sandbox.cli", "serve", "--host", "127.0.0.1", "--port", "0",
            "--state-dir", str(state_dir), *extra_args]
    if gateway:
        args.append("--gateway")
    log = open(state_dir / "sandbox.log", "ab")  # noqa: SIM115 - handed to the child process
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sandbox exited early: {(state_dir / 'sandbox.log').read_text()[-2000:]}")
        if ready.exists():
            info = json.loads(ready.read_text())
            return RunningSandbox(info["base_url"], state_dir, process, gateway)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("sandbox did not start in time")
