"""Validating the self-service OAuth 1.0a fields of a connection, before any request.

What IBKR's self-service portal gives a user (reference: IBKR's OAuth 1.0a self-service page,
reached through the login with ``action=OAUTH``): a consumer key they chose, an access token and
an access token secret; what they keep: the private halves of the signature and encryption keys
they uploaded, and the ``dhparam.pem`` whose prime IBKR uses (generator 2). Every problem is an
:class:`IbkrConfigError` naming the field and the fix.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from ibkr_provider.client.config import pem_block, read_pem
from ibkr_provider.client.errors import IbkrConfigError
from ibkr_provider.client.fields import with_current_names
from ibkr_provider.client.keys import load_rsa_private_key
from ibkr_provider.client.oauth1 import (
    DEFAULT_REALM,
    DH_GENERATOR,
    TEST_CONSUMER,
    OAuth1aCredentials,
    QuerySigning,
    decrypt_prepend,
)


def _text(values: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        raw = values.get(key)
        if raw is not None and str(raw).strip():
            return str(raw).strip()
    return None


def required_rsa_key(values: Mapping[str, Any], field: str, what: str) -> RSAPrivateKey:
    """The private RSA key in ``field`` (PEM) or ``field_path``; missing or unreadable is a config
    error naming the field. ``what`` says which key IBKR's portal holds the public half of."""
    pem = read_pem(values, field)
    if not pem:
        raise IbkrConfigError(field, f"oauth1a needs {what} (PEM) or {field}_path")
    return load_rsa_private_key(pem, field)


def consumer_realm(values: Mapping[str, Any], consumer_key: str) -> str:
    """The ``realm`` extra, else IBKR's: ``test_realm`` for the TESTCONS consumer, ``limited_poa``
    for every other."""
    return _text(values, "realm") or ("test_realm" if consumer_key == TEST_CONSUMER else DEFAULT_REALM)


#: DH prime sizes accepted: IBKR's portal takes 2048-bit parameters (``openssl dhparam 2048``);
#: the bound keeps a pasted giant number from costing minutes of CPU in a Test.
DH_PRIME_BITS = (2048, 8192)
_DH_LABELS = ("DH PARAMETERS", "X9.42 DH PARAMETERS")


def read_dh_parameters(pem: str) -> tuple[int, int]:
    """(prime, generator) of a ``DH PARAMETERS`` PEM (PKCS#3, as ``openssl dhparam`` writes it)
    or an ``X9.42 DH PARAMETERS`` PEM (what recent ``cryptography`` writes). asn1crypto reads
    both without any arithmetic, so the size is checked before anything costly runs."""
    from asn1crypto import algos, keys

    try:
        label, der = pem_block(pem)
        if label not in _DH_LABELS:
            raise ValueError(label)
        parsed = algos.DHParameters.load(der) if label == "DH PARAMETERS" else keys.DomainParameters.load(der)
        return int(parsed["p"].native), int(parsed["g"].native)
    except (ValueError, TypeError, KeyError):
        raise IbkrConfigError(
            "dh_params", "cannot read the DH parameters: paste the dhparam.pem you uploaded to IBKR"
        ) from None


@functools.lru_cache(maxsize=8)
def check_dh_prime(prime: int, field: str) -> int:
    """``prime`` if it can be IBKR's DH prime: 2048 to 8192 bits, odd, and accepted by OpenSSL's
    DH parameter check (through ``cryptography``; a probable-prime test with generator 2).
    Checked once per process and prime."""
    low, high = DH_PRIME_BITS
    bits = prime.bit_length()
    if not low <= bits <= high:
        raise IbkrConfigError(
            field, f"a {bits}-bit prime is not accepted; IBKR's is {low} bits ({low} to {high} accepted)"
        )
    if prime % 2 == 0:
        raise IbkrConfigError(field, "the DH prime is even, so it is not a prime")
    from cryptography.hazmat.primitives.asymmetric import dh

    with warnings.catch_warnings():
        # cryptography marks finite-field DH deprecated; only its parameter check is used here
        warnings.simplefilter("ignore")
        try:
            dh.DHParameterNumbers(prime, DH_GENERATOR).parameters()
        except ValueError:
            raise IbkrConfigError(
                field, "these are not valid DH parameters (the number is not a prime IBKR can use)"
            ) from None
    return prime


def parse_dh_prime(values: Mapping[str, Any]) -> int:
    """The DH prime from ``dh_params`` / ``dh_params_path`` (the ``dhparam.pem`` uploaded to
    IBKR) or ``dh_prime`` (hex, as ibind users keep it); the generator must be 2."""
    pem = read_pem(values, "dh_params")
    prime_hex = _text(values, "dh_prime")
    if pem and prime_hex:
        raise IbkrConfigError("dh_params", "set either dh_params (PEM) or dh_prime (hex), not both")
    if pem:
        prime, generator = read_dh_parameters(pem)
        if generator != DH_GENERATOR:
            raise IbkrConfigError(
                "dh_params",
                f"the generator is {generator}; IBKR uses 2 (openssl dhparam -out dhparam.pem 2048)",
            )
        return check_dh_prime(prime, "dh_params")
    if prime_hex:
        digits = prime_hex.lower().removeprefix("0x").replace(":", "").replace(" ", "")
        if len(digits) > DH_PRIME_BITS[1] // 4 + 2:
            raise IbkrConfigError("dh_prime", f"longer than a {DH_PRIME_BITS[1]}-bit number")
        try:
            prime = int(digits, 16)
        except ValueError:
            raise IbkrConfigError("dh_prime", "not a hexadecimal number") from None
        return check_dh_prime(prime, "dh_prime")
    raise IbkrConfigError(
        "dh_params",
        "oauth1a needs the DH parameters: dh_params (the dhparam.pem you uploaded), dh_params_path "
        "or dh_prime",
    )


def parse_oauth1a(values: Mapping[str, Any]) -> OAuth1aCredentials:
    """Validate every OAuth 1.0a field and decrypt the secret's prepend (nothing is sent)."""
    values = with_current_names(values)
    consumer_key = _text(values, "consumer_key", "client_id")
    if not consumer_key:
        raise IbkrConfigError(
            "login", "the consumer key is missing; put it in the connection's login (or extra consumer_key)"
        )
    access_token = _text(values, "access_token")
    if not access_token:
        raise IbkrConfigError(
            "access_token", "oauth1a needs the access token IBKR's self-service portal generated for you"
        )
    secret = _text(values, "access_token_secret", "password")
    if not secret:
        raise IbkrConfigError(
            "password",
            "the access token secret is missing; put it in the connection's password (or extra "
            "access_token_secret), exactly as IBKR's portal showed it",
        )
    signature_key = required_rsa_key(values, "signature_private_key", "the private signature key")
    encryption_key = required_rsa_key(values, "encryption_private_key", "the private encryption key")
    dh_prime = parse_dh_prime(values)
    prepend = decrypt_prepend(encryption_key, secret)
    realm = consumer_realm(values, consumer_key)
    rule = (_text(values, "oauth1_query_signing") or QuerySigning.GUIDE.value).lower()
    try:
        query_signing = QuerySigning(rule)
    except ValueError:
        raise IbkrConfigError("oauth1_query_signing", f"{rule!r} is not one of guide, ignore, url") from None
    return OAuth1aCredentials(
        consumer_key=consumer_key,
        access_token=access_token,
        prepend=prepend,
        signature_key=signature_key,
        dh_prime=dh_prime,
        realm=realm,
        query_signing=query_signing,
    )
