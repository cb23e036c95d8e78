"""The sandbox's state directory: demo client key pair, TLS material, the Flex token and the
OAuth 1.0a consumers (what it writes for its clients once it listens: ``connections.py``).

Files (created on first start, reused afterwards):

- ``client_private_key.pem`` (mode 0600) / ``client_public_key.pem``: the demo client's RSA
  key pair; the public half is registered as ``sandbox-client`` / kid ``sandbox-key-1``.
- ``gateway_ca.pem``, ``gateway_cert.pem``, ``gateway_key.pem``: self-signed CA and a server
  certificate for ``localhost``/``127.0.0.1`` (gateway mode, TLS).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
from pathlib import Path
from typing import Any

from asn1crypto import algos, pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from ibkr_sandbox.seed import SANDBOX_CLIENT_ID, SANDBOX_CREDENTIAL, SANDBOX_KEY_ID

PRIVATE_KEY_FILE = "client_private_key.pem"
PUBLIC_KEY_FILE = "client_public_key.pem"
CA_FILE = "gateway_ca.pem"
CERT_FILE = "gateway_cert.pem"
CERT_KEY_FILE = "gateway_key.pem"
FLEX_TOKEN_FILE = "flex_token.txt"
#: The third-party consumer IBKR "registered" in the sandbox, for the Connect IBKR flow.
THIRD_PARTY_CONSUMER_KEY = "AIRFLOWTP"
#: Who may log in on the sandbox's authorize page (the sandbox's username, this password).
AUTHORIZE_PASSWORD = "sandbox-password"


def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _pem_private(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def ensure_client_keys(state_dir: Path) -> dict[str, dict[str, str]]:
    """Create the demo client's key pair once; return the registry {client id: {kid: public PEM}}."""
    private_path, public_path = state_dir / PRIVATE_KEY_FILE, state_dir / PUBLIC_KEY_FILE
    if not private_path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_private(private_path, _pem_private(key))
        public_path.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return {SANDBOX_CLIENT_ID: {SANDBOX_KEY_ID: public_path.read_text()}}


def ensure_gateway_tls(state_dir: Path) -> tuple[Path, Path, Path]:
    """Create a self-signed CA and a localhost server certificate once; return (ca, cert, key)."""
    ca_path, cert_path, key_path = state_dir / CA_FILE, state_dir / CERT_FILE, state_dir / CERT_KEY_FILE
    if ca_path.exists() and cert_path.exists() and key_path.exists():
        return ca_path, cert_path, key_path
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "IBKR sandbox CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("ibkr-sandbox"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    write_private(key_path, _pem_private(server_key))
    return ca_path, cert_path, key_path


def ensure_flex_token(state_dir: Path, given: str | None = None) -> str:
    """The sandbox's Flex token: ``given`` (e.g. fixed in docker-compose), else generated once
    (IBKR's are 24 digits)."""
    path = state_dir / FLEX_TOKEN_FILE
    if given:
        write_private(path, given.encode())
    elif not path.exists():
        import secrets

        write_private(path, "".join(secrets.choice("0123456789") for _ in range(24)).encode())
    return path.read_text().strip()


OAUTH1_FILE = "oauth1_consumer.json"
OAUTH1_SIGNATURE_KEY = "oauth1_private_signature.pem"
OAUTH1_ENCRYPTION_KEY = "oauth1_private_encryption.pem"
OAUTH1_DH_PARAMS = "oauth1_dhparam.pem"
SANDBOX_CONSUMER_KEY = "SANDBOXCK"


def ensure_oauth1_consumer(state_dir: Path) -> dict[str, Any]:
    """The self-service OAuth 1.0a consumer of this sandbox, created once: what a user does in
    IBKR's portal (two key pairs, dhparam.pem with a fixed 2048-bit safe prime, generator 2) and
    what IBKR hands back (an access token, and a secret: a random prepend encrypted to the
    encryption key, base64). Returns the sandbox's side: consumer key, access token, prepend hex,
    the signature public key and the prime."""
    from ibkr_sandbox.oauth1 import GENERATOR, RFC3526_PRIME_2048

    record_path = state_dir / OAUTH1_FILE
    if record_path.exists():
        loaded: dict[str, Any] = json.loads(record_path.read_text())
        return loaded
    signature = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_private(state_dir / OAUTH1_SIGNATURE_KEY, _pem_private(signature))
    write_private(state_dir / OAUTH1_ENCRYPTION_KEY, _pem_private(encryption))
    # PKCS#3, as `openssl dhparam -out dhparam.pem 2048` writes it.
    parameters = algos.DHParameters({"p": RFC3526_PRIME_2048, "g": GENERATOR})
    (state_dir / OAUTH1_DH_PARAMS).write_bytes(pem.armor("DH PARAMETERS", parameters.dump()))
    import secrets

    prepend = secrets.token_bytes(32)
    secret = base64.b64encode(encryption.public_key().encrypt(prepend, padding.PKCS1v15())).decode()
    record = {
        "consumer_key": SANDBOX_CONSUMER_KEY,
        "access_token": secrets.token_hex(10),
        "access_token_secret": secret,
        "prepend": prepend.hex(),
        "signature_public_pem": signature.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
        "dh_prime": format(RFC3526_PRIME_2048, "x"),
        "credential": SANDBOX_CREDENTIAL,
    }
    write_private(record_path, json.dumps(record, indent=2).encode())
    return record


def third_party_consumer(state_dir: Path) -> dict[str, str]:
    """The sandbox's registered third-party consumer: it shares the self-service consumer's key
    files and DH prime (a sandbox convenience) under its own consumer key."""
    record = ensure_oauth1_consumer(state_dir)
    encryption = serialization.load_pem_private_key((state_dir / OAUTH1_ENCRYPTION_KEY).read_bytes(), None)
    public = encryption.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "consumer_key": THIRD_PARTY_CONSUMER_KEY,
        "signature_public_pem": record["signature_public_pem"],
        "encryption_public_pem": public.decode(),
        "dh_prime": record["dh_prime"],
    }
