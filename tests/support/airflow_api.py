"""Airflow's REST API as the admin user, for tests that drive a running Airflow."""

from __future__ import annotations

import json
import time
from typing import Any

import requests


class Api:
    """Airflow's REST API as the admin user."""

    def __init__(self, url: str, password: str) -> None:
        self.url = url
        login = {"username": "admin", "password": password}
        token = requests.post(f"{url}/auth/token", json=login, timeout=30)
        token.raise_for_status()
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def get(self, path: str, **params: Any) -> Any:
        answer = requests.get(f"{self.url}/api/v2/{path}", headers=self.headers, params=params, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        deadline = time.monotonic() + 240  # the dag-processor's first parse
        dag_url = f"{self.url}/api/v2/dags/{dag_id}"
        while requests.get(dag_url, headers=self.headers, timeout=30).status_code != 200:
            assert time.monotonic() < deadline, f"{dag_id} was not parsed in 240 s"
            time.sleep(1)
        answer = requests.post(
            f"{self.url}/api/v2/dags/{dag_id}/dagRuns",
            headers=self.headers,
            json={"logical_date": None, "conf": conf or {}},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["dag_run_id"])

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        (found,) = [t for t in self.task_instances(dag_id, run_id) if t["task_id"] == task_id]
        return found

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)[
            "task_instances"
        ]
        return found

    def finish(self, dag_id: str, run_id: str, seconds: float = 300) -> str:
        deadline = time.monotonic() + seconds
        while True:
            state = str(self.get(f"dags/{dag_id}/dagRuns/{run_id}")["state"])
            if state in ("success", "failed"):
                return state
            assert time.monotonic() < deadline, f"{dag_id} {run_id} still {state} after {seconds} s"
            time.sleep(0.5)

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        value = self.get(path, map_index=map_index)["value"]
        return json.loads(value) if isinstance(value, str) else value
