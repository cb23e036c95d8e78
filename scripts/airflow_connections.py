"""Store connections in an Airflow metadata database with one `airflow connections import`.

Used by `make up` and `make cluster`: each `airflow` command costs seconds of start-up, so all
connections go in one command. The file that carries their secrets to that command is readable
only by this user (the provider's own 0600 atomic writer) and removed straight after.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from ibkr_provider.client.session.locking import write_private_atomically


def import_connections(
    airflow: str, conns: dict[str, dict[str, Any]], folder: Path, env: dict[str, str]
) -> None:
    """Create or overwrite ``conns`` (conn_id -> Airflow's connection JSON); exit naming the
    command's error when Airflow refuses them."""
    file = folder / "ibkr-connections.json"
    write_private_atomically(file, json.dumps(conns).encode())
    try:
        result = subprocess.run(
            [airflow, "connections", "import", "--overwrite", str(file)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        file.unlink(missing_ok=True)
    if result.returncode != 0:
        output = result.stdout[-2000:] + result.stderr[-3000:]
        raise SystemExit(f"`airflow connections import` failed:\n{output}")
