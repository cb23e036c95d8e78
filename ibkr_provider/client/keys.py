"""Loading the RSA private keys IBKR verifies our signatures with (the OAuth 2.0 client key, the
OAuth 1.0a signature and encryption keys), with errors that name the field and never echo the key."""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ibkr_provider.client.errors import IbkrConfigError


def load_rsa_private_key(pem: str, field: str) -> RSAPrivateKey:
    """A private RSA key from PEM, or a config error naming ``field`` (the key is never echoed)."""
    try:
        key = _parse_private_key(pem)
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


@functools.lru_cache(maxsize=8)
def _parse_private_key(pem: str) -> PrivateKeyTypes:
    """The parsed key, once per process for each PEM text. Loading checks the RSA key's
    consistency, which costs 50 ms for a 2048-bit key and 160 ms for a 3072-bit one, and every
    client built loads its keys: the API server's Test button, the triggerer and a worker running
    several IBKR tasks would pay it again for the same key. The cache holds no more than the
    connection already does (the PEM text lives in every config built from it); a key that fails
    to load is not cached."""
    return serialization.load_pem_private_key(pem.encode(), password=None)
