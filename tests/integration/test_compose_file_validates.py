"""docker-compose.yaml is accepted by a real Compose implementation: Debian's docker-compose
1.29 (`make test` installs it), whose ``config`` command validates the file against the Compose
schema it implements without a Docker engine. 1.29 is the minimum the README states.

It refuses to start without the secrets (no usable default), accepts the `.env` that
``make compose-env`` writes, and publishes its ports on 127.0.0.1 only unless told otherwise."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.local_airflow import ROOT as REPO_ROOT

SECRETS = (
    "FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "_AIRFLOW_WWW_USER_PASSWORD",
)


def _config(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.fail("docker-compose is missing: `make test` installs it (apt-get install docker-compose)")
    shutil.copy(REPO_ROOT / "docker-compose.yaml", folder / "docker-compose.yaml")
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.endswith("_BIND")}
    return subprocess.run(
        [compose, "--project-directory", str(folder), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**clean, **env},
    )


def test_compose_refuses_to_start_without_its_secrets(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AIRFLOW_UID=50000\n")  # a .env from before the secrets were required
    refused = _config(tmp_path)
    assert refused.returncode != 0
    assert "make compose-env" in refused.stderr, refused.stderr


def test_docker_compose_config_accepts_the_generated_env(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "compose_env.py"), str(tmp_path / ".env")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "mode 0600" in made.stdout
    env_file = tmp_path / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert all(len(values[name]) >= 24 for name in SECRETS)
    again = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "compose_env.py"), str(env_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (
        "not overwritten" in again.stderr
        and dict(line.split("=", 1) for line in env_file.read_text().splitlines()) == values
    )

    checked = _config(tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "airflow-worker:" in checked.stdout and "ibkr-sandbox:" in checked.stdout
    assert "redis://redis:6379/1" in checked.stdout  # the shared IBKR session cache survived parsing
    assert values["AIRFLOW__API_AUTH__JWT_SECRET"] in checked.stdout
    published = [line.strip() for line in checked.stdout.splitlines() if line.strip().startswith("- ")]
    assert "- 127.0.0.1:8080:8080/tcp" in published and "- 127.0.0.1:5001:5001/tcp" in published
    assert "airflow_jwt_secret" not in checked.stdout

    exposed = _config(tmp_path, AIRFLOW_UI_BIND="0.0.0.0")
    assert "- 0.0.0.0:8080:8080/tcp" in exposed.stdout, exposed.stdout
