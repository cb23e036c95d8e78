"""One IBKR session for every task of a real multi-process Airflow: an api-server and LocalExecutor
(``airflow dags test --use-executor``, recipe: airflow-3-providers.md section 10), each task in a
supervised process of its own, for both auth types. Eight mapped tasks share one token, SSO
session and brokerage session (OAuth 2.0) or one live session token (OAuth 1.0a); a DAG that
deliberately logs and prints every secret leaves only *** in its task log.

The two tests share one api-server and Airflow home (a module fixture: starting an api-server
costs about 15 s of CPU on this machine); each judges only the DAG runs and task logs it made.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from ibkr_sandbox.process import RunningSandbox

from tests.support.airflow_cli import AirflowCli, dag_folder
from tests.support.airflow_cluster import airflow_cluster
from tests.support.sessions import ALL_ACCOUNTS, assert_one_live_session_token, assert_one_session

pytestmark = pytest.mark.xdist_group("local-executor")  # one worker, so one api-server


@pytest.fixture(scope="module")
def executor_airflow(
    tmp_path_factory: pytest.TempPathFactory, migrated_template: Path
) -> Iterator[tuple[Path, dict[str, str]]]:
    """(AIRFLOW_HOME, environment) of a running api-server with LocalExecutor; the DAG folder
    holds the three DAGs the tests run."""
    home = tmp_path_factory.mktemp("executor-home")
    shutil.copy(migrated_template, home / "airflow.db")
    runs = ("ibkr_portfolio_snapshot", "ibkr_parallel_accounts", "ibkr_mask_probe")
    dags = dag_folder(tmp_path_factory.mktemp("executor"), *runs)
    with airflow_cluster(home, dags, parallelism=8) as env:
        yield home, env


def _task_logs(home: Path) -> set[Path]:
    return set((home / "logs").rglob("*.log"))


def _run(airflow_cli: AirflowCli, dag_id: str, env: dict[str, str], *conf: str) -> None:
    result = airflow_cli.run(["dags", "test", dag_id, *conf, "--use-executor"], env, timeout=400)
    assert result.returncode == 0, dag_id + (result.stdout + result.stderr)[-4000:]


def _eight_pids_read_every_account(out: Path) -> None:
    reports = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert len(reports) == 8
    assert len({r["pid"] for r in reports}) == 8  # eight task processes
    assert all(r["accounts"] == ALL_ACCOUNTS for r in reports)


def test_oauth2_mapped_tasks_share_one_session_and_log_no_secret(
    executor_airflow: tuple[Path, dict[str, str]],
    fresh_sandbox: RunningSandbox,
    tmp_path: Path,
    airflow_cli: AirflowCli,
) -> None:
    """Eight mapped tasks in eight task processes share one session. Then a DAG that
    deliberately logs and prints the bearer, the access token, both signed JWTs and every line
    of the private key leaves only *** in its task log.

    Scope of the scan: the task log Airflow persists and serves in the UI. Airflow 3.3's
    LocalExecutor also copies task output to the executor's own stdout
    (``subprocess_logs_to_stdout=True``); that copy does not apply masks registered at runtime,
    which no provider can change (see README, Secrets)."""
    home, cluster_env = executor_airflow
    earlier_logs = _task_logs(home)
    out = tmp_path / "out"
    out.mkdir()
    secrets_out = tmp_path / "secrets.json"
    env = {
        **cluster_env,
        "AIRFLOW_CONN_IBKR_DEFAULT": fresh_sandbox.connection_json(),
        "IBKR_PARALLEL_OUT": str(out),
        "IBKR_MASK_PROBE_OUT": str(secrets_out),
    }
    _run(airflow_cli, "ibkr_parallel_accounts", env)
    _eight_pids_read_every_account(out)
    assert_one_session(fresh_sandbox.stats())

    # a session of its own (memory cache), so the probe signs and sees both JWTs itself
    env["AIRFLOW_CONN_IBKR_DEFAULT"] = fresh_sandbox.connection_json(session_cache="memory")
    _run(airflow_cli, "ibkr_mask_probe", env)
    runtime = json.loads(secrets_out.read_text())
    assert len(runtime["signed_jwts"]) == 2  # the client assertion and the SSO-session JWT
    key_pem = (fresh_sandbox.state_dir / "client_private_key.pem").read_text()
    body_lines = [line for line in key_pem.splitlines() if "-----" not in line]
    assert [line for line in runtime["key_lines"] if "-----" not in line] == body_lines
    secrets = {name: runtime[name] for name in ("bearer", "access_token", "tickle_session")}
    secrets.update({f"signed JWT {n}": jwt for n, jwt in enumerate(runtime["signed_jwts"])})
    secrets.update({f"private key line {n}": line for n, line in enumerate(body_lines)})  # every line
    assert all(len(value) > 5 for value in secrets.values())  # Airflow masks values over 5 characters

    task_logs = [p for p in _task_logs(home) - earlier_logs if "task_id=leak_everything" in str(p)]
    assert task_logs, "the run wrote no task log"
    text = "\n".join(p.read_text() for p in task_logs)
    # The probe really logged: the lines are there, with the values masked.
    for probe in ("leak via logging: bearer=***", "leak via print: access_token=***", "tickle_session=***"):
        assert probe in text, probe
    assert "leak via logging: jwt 1=" in text and f"key_line {len(runtime['key_lines']) - 2}=***" in text
    assert "leak of the whole key" in text
    for name, value in secrets.items():
        assert value not in text, f"{name} leaked into the task log"


def test_oauth1a_mapped_tasks_and_the_snapshot_share_one_token_and_log_no_secret(
    executor_airflow: tuple[Path, dict[str, str]],
    fresh_oauth1_sandbox: RunningSandbox,
    tmp_path: Path,
    airflow_cli: AirflowCli,
) -> None:
    """Self-service OAuth 1.0a: eight mapped tasks, then the portfolio snapshot (every position),
    all in separate task processes: one live session token for everything; then the probe that
    logs every secret, and a scan of every task log of these runs: no prepend, token or
    signature. (The rebalance DAG's OAuth 1.0a signing is the same client path the snapshot
    takes.)"""
    home, cluster_env = executor_airflow
    earlier_logs = _task_logs(home)
    out = tmp_path / "out"
    out.mkdir()
    env = {
        **cluster_env,
        "AIRFLOW_CONN_IBKR_DEFAULT": fresh_oauth1_sandbox.connection_json(),
        "IBKR_PARALLEL_OUT": str(out),
        "IBKR_MASK_PROBE_OUT": str(tmp_path / "secrets.json"),
    }
    _run(airflow_cli, "ibkr_parallel_accounts", env)
    _eight_pids_read_every_account(out)
    snapshot_conf = json.dumps({"output_dir": str(tmp_path / "snapshot")})
    _run(airflow_cli, "ibkr_portfolio_snapshot", env, "-c", snapshot_conf)
    assert_one_live_session_token(fresh_oauth1_sandbox.stats())  # for both DAG runs and every task
    # a session of its own (memory cache), so the probe really mints a live session token and
    # the sandbox receives a fresh RSA signature
    env["AIRFLOW_CONN_IBKR_DEFAULT"] = fresh_oauth1_sandbox.connection_json(session_cache="memory")
    _run(airflow_cli, "ibkr_mask_probe", env)
    assert fresh_oauth1_sandbox.stats()["lst_issued"] == 2
    snapshot = json.loads(next((tmp_path / "snapshot").glob("portfolio_snapshot_*.json")).read_text())
    by_id = {a["account"]["accountId"]: a for a in snapshot["accounts"]}
    assert len(by_id["DU1234567"]["positions"]) == 273

    runtime = json.loads((tmp_path / "secrets.json").read_text())
    secrets = {"live session token": runtime["bearer"], "prepend": runtime["prepend"]}
    secrets.update({"access token": runtime["access_token"], "tickle session": runtime["tickle_session"]})
    # the probe's signature as the sandbox received it (the newest of the two LST requests)
    assert len(fresh_oauth1_sandbox.lst_signatures()) == 2
    assert runtime["lst_request_signatures"] == fresh_oauth1_sandbox.lst_signatures()[-1:]
    secrets.update({f"LST request signature {n}": s for n, s in enumerate(runtime["lst_request_signatures"])})
    assert all(len(value) > 5 for value in secrets.values())
    logs = "\n".join(p.read_text() for p in _task_logs(home) - earlier_logs)
    assert "leak via logging: prepend=***" in logs and "leak via logging: bearer=***" in logs
    assert "leak via logging: lst_signature 0=***" in logs
    for name, value in secrets.items():
        assert value not in logs, f"{name} leaked into a task log"
    assert "oauth_signature" not in logs
