"""Benchmark: what building a client costs a process that builds more than one.

The API server builds a client for every press of a connection's Test button, the triggerer one
per deferred sensor, and a worker one per IBKR task it runs. Building one parses the connection's
RSA key, and parsing checks the key's consistency (its primes), which is the expensive part. The
client keeps parsed keys per PEM text for the life of the process; this measures the CPU time
of building (and closing) a client from a connection's values, with that cache and with it
emptied before every build (each build then parses as the first one in a process does). No
request is sent: a client connects on first use.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from ibkr_provider.client import IbkrClient, IbkrClientConfig, keys  # noqa: E402

KEY_SIZES = (2048, 3072)


def _pem(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _build_ms(pem: str, builds: int, before_each: Callable[[], None]) -> float:
    values = {"client_id": "bench", "credential": "user1", "ip": "203.0.113.7", "private_key": pem}
    values["session_cache"] = "memory"
    samples = []
    for _ in range(builds):
        before_each()
        start = time.process_time()
        IbkrClient(IbkrClientConfig.from_mapping(values)).close()
        samples.append((time.process_time() - start) * 1000)
    return statistics.median(samples)


def measure(builds: int = 40) -> dict[int, dict[str, float]]:
    results = {}
    for bits in KEY_SIZES:
        pem = _pem(bits)
        cold = _build_ms(pem, builds, keys._parse_private_key.cache_clear)
        warm = _build_ms(pem, builds, lambda: None)
        results[bits] = {"cold_ms": cold, "warm_ms": warm}
    return results


def markdown(results: dict[int, dict[str, float]]) -> str:
    rows = [
        f"| {bits} | {r['cold_ms']:.1f} | {r['warm_ms']:.1f} | {r['cold_ms'] / r['warm_ms']:.0f}x |"
        for bits, r in results.items()
    ]
    return "\n".join(
        [
            "## Building a client in a process that builds several",
            "",
            "CPU time (`time.process_time`, median of 40) to build and close an OAuth 2.0 client from a "
            "connection's values, as the API server does for each Test, the triggerer for each deferred "
            "sensor and a worker for each IBKR task: parsing the private key (with its consistency check) "
            "once per process, or before every build (the cache emptied each time, as in a fresh process). "
            "Command: `make bench`, or `.venv/bin/python benchmarks/client_build.py` for this table alone.",
            "",
            "| RSA key bits | ms per build, key parsed each time | ms per build, parsed key kept | ratio |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    sys.stdout.write(markdown(measure()))
