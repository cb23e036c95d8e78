"""Loading the RSA private keys IBKR verifies our signatures with (the OAuth 2.0 client key, the
OAuth 1.0a signature and encryption keys), with errors that name the field and never echo the key."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from ibkr_provider.client.errors import IbkrConfigError


def load_rsa_private_key(pem: str, field: str) -> RSAPrivateKey:
    """A private RSA key from PEM, or a config error naming ``field`` (the key is never echoed)."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        reason = (
            "it is encrypted; provide an unencrypted key"
            if "encrypted" in str(exc).lower()
            else "it is not a valid PEM private key (a public key, or the file is damaged?)"
        )
        raise IbkrConfigError(field, f"cannot load the key: {reason}") from None
    if not isinstance(key, RSAPrivateKey):
        raise IbkrConfigError(field, "IBKR needs an RSA key (openssl genrsa -out key.pem 3072)")
    return key
