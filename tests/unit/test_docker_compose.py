"""docker-compose.yaml and the Dockerfile are consistent (no Docker engine runs here, so the
files are parsed and cross-checked instead of started)."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ibkr_sandbox.seed import SANDBOX_CLIENT_ID, SANDBOX_CREDENTIAL, SANDBOX_KEY_ID

from ibkr_provider.client.config import IbkrClientConfig
from scripts.local_airflow import ROOT as REPO_ROOT

AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-worker": "celery worker",
    "airflow-triggerer": "triggerer",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
    return loaded


def _volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[source] = target
    return mounts


def test_services_follow_the_official_celery_layout(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {*AIRFLOW_SERVICES, "airflow-init", "postgres", "redis", "ibkr-sandbox"}
    for name, command in AIRFLOW_SERVICES.items():
        assert services[name]["command"] == command, name
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["ibkr-sandbox"]["condition"] == "service_healthy"
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert "@redis:6379" in env["AIRFLOW__CELERY__BROKER_URL"]
    assert "@postgres/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/")
    assert services["airflow-init"]["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"


def test_every_component_runs_the_image_built_with_the_provider(compose: dict[str, Any]) -> None:
    services = compose["services"]
    images = {
        name: (svc.get("build"), svc.get("image"))
        for name, svc in services.items()
        if name.startswith("airflow-") or name == "ibkr-sandbox"
    }
    assert len(set(images.values())) == 1
    build, _ = next(iter(images.values()))
    assert build == "."
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    pinned = re.search(r"ARG AIRFLOW_VERSION=(\S+)", dockerfile)
    assert pinned and pinned.group(1) == metadata.version("apache-airflow")
    assert "FROM apache/airflow:${AIRFLOW_VERSION}" in dockerfile
    install = next(line for line in dockerfile.splitlines() if line.startswith("RUN pip install"))
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in install and "/opt/provider" in install
    copied = {m.group(1) for m in re.finditer(r"COPY .*? (\S+) /opt/provider", dockerfile)}
    assert "ibkr_provider" in copied
    assert "/opt/sandbox" in install  # the sandbox service runs the sandbox distribution


def test_connection_env_points_at_the_sandbox_service(compose: dict[str, Any], tmp_path: Path) -> None:
    from ibkr_provider.hooks.connection import connection_values

    services = compose["services"]
    sandbox = services["ibkr-sandbox"]
    args = sandbox["command"]
    port = args[args.index("--port") + 1]
    state_dir = args[args.index("--state-dir") + 1]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert _volume_mounts(sandbox)["sandbox-state"] == state_dir

    conn = json.loads(services["airflow-worker"]["environment"]["AIRFLOW_CONN_IBKR_DEFAULT"])
    assert conn["conn_type"] == "ibkr"
    assert conn["host"] == f"http://ibkr-sandbox:{port}" == args[args.index("--public-url") + 1]
    assert (conn["login"], conn["extra"]["client_key_id"], conn["extra"]["credential"]) == (
        SANDBOX_CLIENT_ID,
        SANDBOX_KEY_ID,
        SANDBOX_CREDENTIAL,
    )
    # every worker host shares the IBKR session through the compose file's Redis, as in `make cluster`
    assert conn["extra"]["session_cache"] == "redis://redis:6379/1"
    key_path = conn["extra"]["private_key_path"]
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        mounts = _volume_mounts(services[name])
        assert key_path.startswith(mounts["sandbox-state"].rstrip("/") + "/"), name
        assert key_path.startswith(state_dir), name
        assert (
            services[name]["environment"]["AIRFLOW_CONN_IBKR_DEFAULT"]
            == services["airflow-worker"]["environment"]["AIRFLOW_CONN_IBKR_DEFAULT"]
        )
    # The connection passes the hook's own validation (with a stand-in for the mounted key).
    stand_in = tmp_path / "key.pem"
    stand_in.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    extra = {**conn["extra"], "private_key_path": str(stand_in)}
    config = IbkrClientConfig.from_mapping(connection_values(conn["host"], conn["login"], None, extra))
    assert config.api_url == f"http://ibkr-sandbox:{port}/v1/api"
    assert "sandbox-state" in compose["volumes"]


def test_flex_connection_env_matches_the_sandbox_flex_token(compose: dict[str, Any]) -> None:
    services = compose["services"]
    args = services["ibkr-sandbox"]["command"]
    token = args[args.index("--flex-token") + 1]
    port = args[args.index("--port") + 1]
    for name in AIRFLOW_SERVICES:
        flex = json.loads(services[name]["environment"]["AIRFLOW_CONN_IBKR_FLEX_DEFAULT"])
        assert flex["conn_type"] == "ibkr_flex"
        assert flex["host"] == f"http://ibkr-sandbox:{port}/AccountManagement/FlexWebService"
        assert flex["password"] == token


def test_redis_keeps_the_shared_session_and_the_pacing_ledger_across_a_restart(
    compose: dict[str, Any],
) -> None:
    """A Redis that restarts empty costs every worker a new IBKR login and makes the pacer forget
    the requests sent just before it (one 429 seen in a chaos run): append-only, on a volume."""
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes", command
    assert _volume_mounts(redis).get("redis-data") == "/data"
    assert "redis-data" in compose["volumes"]
