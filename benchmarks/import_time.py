"""Benchmark: what importing the provider's operators and sensor costs a DAG file.

The DAG processor imports every DAG file on every parse, so the provider's operator and sensor
modules must be cheap. Each sample is a fresh interpreter that imports ``airflow.sdk`` first
(every DAG file does) and then times the import of the five operator/sensor modules.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile

MODULES = (
    "ibkr_provider.operators.portfolio",
    "ibkr_provider.operators.orders",
    "ibkr_provider.operators.market",
    "ibkr_provider.operators.flex",
    "ibkr_provider.sensors.order_status",
)
GOAL_MS = 50.0

_PROBE = (
    "import time, airflow.sdk\n"
    "t = time.perf_counter()\n"
    + "".join(f"import {m}\n" for m in MODULES)
    + "print((time.perf_counter() - t) * 1000)\n"
)


def measure(samples: int = 9) -> list[float]:
    """Milliseconds per fresh interpreter, ``samples`` times."""
    results = []
    with tempfile.TemporaryDirectory(prefix="ibkr-import-") as home:
        env = {"AIRFLOW_HOME": home, "PATH": "/usr/bin:/bin"}
        for _ in range(samples):
            out = subprocess.run(
                [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
            )
            results.append(float(out.stdout.strip().splitlines()[-1]))
    return results


def markdown(samples: list[float]) -> str:
    median = statistics.median(samples)
    verdict = "meets" if median < GOAL_MS else "misses"
    return "\n".join(
        [
            "## Import cost of the operators and the sensor",
            "",
            f"{len(samples)} fresh interpreters, each importing `airflow.sdk` and then timing "
            f"`import` of {', '.join(f'`{m}`' for m in MODULES)}.",
            "",
            f"Median **{median:.1f} ms** (min {min(samples):.1f}, max {max(samples):.1f}); goal under "
            f"{GOAL_MS:.0f} ms: {verdict} it. The client (requests, PyJWT, cryptography) loads only when "
            "a task builds a client.",
            "",
        ]
    )


if __name__ == "__main__":
    sys.stdout.write(markdown(measure()))
