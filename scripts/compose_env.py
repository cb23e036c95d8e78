"""Write the `.env` that docker-compose.yaml needs, with fresh random secrets (mode 0600).

docker-compose.yaml gives no secret a default: Compose refuses to start until `.env` sets them.
This writes one with a new Fernet key, JWT secret, API secret key and admin password, and never
overwrites an existing file (the Fernet key encrypts the connections already saved). Standard
library only, so it runs before anything is installed: ``python3 scripts/compose_env.py``.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path


def compose_env() -> str:
    """The file's text: every secret docker-compose.yaml requires, freshly generated."""
    values = {
        # a Fernet key is 32 random bytes, url-safe base64 (what Fernet.generate_key() returns)
        "FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(48),
        "_AIRFLOW_WWW_USER_USERNAME": "airflow",
        "_AIRFLOW_WWW_USER_PASSWORD": secrets.token_urlsafe(18),
        "AIRFLOW_UID": str(os.getuid()) if hasattr(os, "getuid") else "50000",
    }
    return "".join(f"{key}={value}\n" for key, value in values.items())


def main(argv: list[str]) -> int:
    target = Path(argv[1] if len(argv) > 1 else ".env")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        sys.stderr.write(f"{target} exists; not overwritten (its FERNET_KEY encrypts saved connections)\n")
        return 0
    with os.fdopen(fd, "w") as handle:
        handle.write(compose_env())
    sys.stdout.write(f"wrote {target} (mode 0600): the admin login is in _AIRFLOW_WWW_USER_PASSWORD\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
