"""Airflow's cluster policy for the chaos run (benchmarks/chaos.py puts this folder on every
cluster process's PYTHONPATH, where Airflow imports ``airflow_local_settings`` from).

The example DAGs wait minutes between retries (2 to 10), as a production schedule should; a
ten-minute chaos run cannot. Every task retries after 5 s instead, at least 3 times: the faults
the run injects are ones a retry is meant to survive. Nothing else about the DAGs changes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any


def task_policy(task: Any) -> None:
    task.retry_delay = timedelta(seconds=5)
    task.retries = max(task.retries or 0, 3)
