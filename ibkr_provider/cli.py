"""``ibkr-provider``: helpers for setting up a connection.

``ibkr-provider oauth1-keys --out DIR`` does the local half of IBKR's self-service OAuth 1.0a
set-up: two RSA key pairs (signature and encryption) and ``dhparam.pem``, private files mode
0600, and says which files to upload. The DH parameters are RFC 3526's 2048-bit MODP group
(a standard safe prime, generator 2), because generating a fresh safe prime takes minutes;
``--generate-dh`` runs ``openssl dhparam 2048`` instead.

``ibkr-provider reconnect CONN_ID`` moves an IBKR user's brokerage session back to a connection
after another connection or login took it (README, troubleshooting): the one deliberate takeover.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: RFC 3526 section 3, the 2048-bit MODP group (generator 2).
RFC3526_GROUP14_PRIME = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)

FILES = {
    "private_signature.pem": "keep: the connection's signature_private_key",
    "public_signature.pem": "upload to IBKR as the public signing key",
    "private_encryption.pem": "keep: the connection's encryption_private_key",
    "public_encryption.pem": "upload to IBKR as the public encryption key",
    "dhparam.pem": "upload to IBKR as the Diffie-Hellman parameters; also the connection's dh_params",
}


def _write(path: Path, data: bytes, *, private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def oauth1_keys(out: Path, *, generate_dh: bool = False) -> dict[str, Path]:
    """Create the five files in ``out`` (refusing to overwrite any); returns name -> path."""
    from asn1crypto import algos, pem
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    existing = [name for name in FILES if (out / name).exists()]
    if existing:
        raise SystemExit(f"{out} already holds {', '.join(existing)}; choose another --out")
    for kind in ("signature", "encryption"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write(out / f"private_{kind}.pem", private, private=True)
        _write(out / f"public_{kind}.pem", public, private=False)
    if generate_dh:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise SystemExit("--generate-dh needs the openssl command")
        subprocess.run([openssl, "dhparam", "-out", str(out / "dhparam.pem"), "2048"], check=True)  # noqa: S603
    else:
        parameters = algos.DHParameters({"p": RFC3526_GROUP14_PRIME, "g": 2})
        _write(out / "dhparam.pem", pem.armor("DH PARAMETERS", parameters.dump()), private=False)
    return {name: out / name for name in FILES}


def _export_connection(conn_id: str) -> Any:
    """``conn_id`` from Airflow (database, secrets backends), set as ``AIRFLOW_CONN_<ID>``."""
    from airflow.models.connection import Connection

    conn = Connection.get_connection_from_secrets(conn_id)
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = conn.as_json()
    return conn


def reconnect(conn_id: str) -> str:
    """Move the IBKR user's brokerage session to ``conn_id``'s session, on purpose: log this
    connection's stale session out, open a new one that takes the brokerage session over (from
    another connection of this deployment or another login), and say which accounts it sees.
    Reads the connection as Airflow's tasks do (run it where the Airflow configuration is)."""
    from ibkr_provider.hooks.connection import extra_of, profile_conn_id
    from ibkr_provider.hooks.ibkr import IbkrHook

    # Outside a task, the Task SDK reads connections only from the environment: export this one
    # (and the consumer profile it names) from Airflow's metadata database and secrets backends.
    profile = profile_conn_id(extra_of(_export_connection(conn_id)))
    if profile:
        _export_connection(profile)
    with IbkrHook(ibkr_conn_id=conn_id) as hook:
        client = hook.get_conn()
        client.sessions.reconnect()
        status = client.connect()
        accounts = ", ".join(a.account_id for a in client.list_accounts(refresh=True)) or "none"
    state = "authenticated" if status.healthy else f"NOT authenticated ({status.fail or status.message})"
    return f"{conn_id} now holds the IBKR brokerage session: {state}; accounts: {accounts}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ibkr-provider", description="Set-up helpers of airflow-provider-ibkr."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    keys = sub.add_parser(
        "oauth1-keys", help="create the keys and DH parameters for IBKR's self-service OAuth 1.0a"
    )
    keys.add_argument("--out", type=Path, required=True, help="directory for the five files (created, 0700)")
    keys.add_argument(
        "--generate-dh", action="store_true", help="generate fresh DH parameters with openssl (takes minutes)"
    )
    again = sub.add_parser(
        "reconnect",
        help="take the IBKR user's brokerage session for this connection (after another connection or "
        "login took it)",
    )
    again.add_argument("conn_id", help="the ibkr connection whose DAGs should hold the session")
    args = parser.parse_args(argv)
    if args.command == "reconnect":
        from ibkr_provider.client.errors import IbkrError

        try:
            sys.stdout.write(reconnect(args.conn_id) + "\n")
        except IbkrError as exc:
            sys.stderr.write(f"{type(exc).__name__}: {exc}. Check {exc.hint}.\n")
            return 1
        return 0
    files = oauth1_keys(args.out, generate_dh=args.generate_dh)
    width = max(len(name) for name in files)
    lines = [f"Created in {args.out}:"]
    lines += [f"  {name:<{width}}  {FILES[name]}" for name in files]
    lines.append(
        "Next: in IBKR's self-service OAuth page upload the three files marked 'upload', choose a "
        "consumer key, press Generate Token, and copy the access token and secret into the connection."
    )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
