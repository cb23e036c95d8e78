"""docker-compose.yaml is accepted by a real Compose implementation: Debian's docker-compose
1.29 (`make test` installs it), whose ``config`` command validates the file against the Compose
schema it implements without a Docker engine. 1.29 is the minimum the README states."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.airflow_cli import REPO_ROOT


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.fail("docker-compose is missing: `make test` installs it (apt-get install docker-compose)")
    shutil.copy(REPO_ROOT / "docker-compose.yaml", tmp_path / "docker-compose.yaml")
    (tmp_path / ".env").write_text("FERNET_KEY=\nAIRFLOW_UID=50000\n")  # what a user's .env holds
    checked = subprocess.run(
        [compose, "--project-directory", str(tmp_path), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "airflow-worker:" in checked.stdout and "ibkr-sandbox:" in checked.stdout
    assert "redis://redis:6379/1" in checked.stdout  # the shared IBKR session cache survived parsing
