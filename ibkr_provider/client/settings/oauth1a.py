"""IBKR self-service OAuth 1.0a settings, checked before any request.

What IBKR's self-service portal gives a user (reference: IBKR's OAuth 1.0a self-service page,
reached through the login with ``action=OAUTH``): a consumer key they chose, an access token and
an access token secret; what they keep: the private halves of the signature and encryption keys
they uploaded, and the ``dhparam.pem`` whose prime IBKR uses (generator 2). The secret is
decrypted here (the "prepend", step 1 of IBKR's guide), so a wrong encryption key or a secret
copied incompletely is a config error naming the field. Every problem is an
:class:`IbkrConfigError` naming the field and the fix.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from ibkr_provider.client.errors import IbkrConfigError
from ibkr_provider.client.fields import with_current_names
from ibkr_provider.client.keys import load_rsa_private_key
from ibkr_provider.client.pem import pem_block, read_pem
from ibkr_provider.client.settings.base import AuthType, text_of

#: IBKR's realm for self-service consumers; its demo consumer ``TESTCONS`` uses ``test_realm``.
DEFAULT_REALM = "limited_poa"
TEST_CONSUMER = "TESTCONS"
#: The DH generator IBKR works with ("generator is 2").
DH_GENERATOR = 2


class QuerySigning(str, enum.Enum):
    """How query parameters enter the signature (IBKR's sources differ: UNCONFIRMED).

    ``guide``: in the sorted parameter list, as IBKR's guide says (default); ``ignore``: not
    signed (what ibind does); ``url``: inside the signed URL, as one IBKR demo did.
    """

    GUIDE = "guide"
    IGNORE = "ignore"
    URL = "url"


def decrypt_prepend(encryption_key: RSAPrivateKey, access_token_secret: str) -> str:
    """Step 1: the prepend, from the access token secret (base64 of an RSA-encrypted value)."""
    try:
        encrypted = base64.b64decode(access_token_secret.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise IbkrConfigError(
            "password",
            "the access token secret is not valid base64: copied incompletely? Copy it again from IBKR's "
            "self-service portal",
        ) from None
    expected = encryption_key.key_size // 8
    if len(encrypted) != expected:
        raise IbkrConfigError(
            "password",
            f"the access token secret decodes to {len(encrypted)} bytes, not the {expected} an RSA-encrypted "
            "value of your encryption key has: copied incompletely? Copy it again from IBKR's portal",
        )
    try:
        return encryption_key.decrypt(encrypted, padding.PKCS1v15()).hex()
    except ValueError:
        raise IbkrConfigError(
            "encryption_private_key",
            "cannot decrypt the access token secret: this is not the key whose public half you uploaded "
            "as the encryption key (or the secret belongs to another consumer)",
        ) from None


@dataclass(frozen=True)
class OAuth1aSettings:
    """Everything the OAuth 1.0a flow signs with, checked: the consumer key, the access token,
    the prepend (the access token secret decrypted with the encryption key), the signature key,
    the DH prime, the realm and how query parameters are signed."""

    consumer_key: str
    access_token: str = field(repr=False)
    prepend: str = field(repr=False)
    signature_key: RSAPrivateKey = field(repr=False)
    dh_prime: int = field(repr=False)
    realm: str = DEFAULT_REALM
    query_signing: QuerySigning = QuerySigning.GUIDE

    @property
    def auth_type(self) -> AuthType:
        return AuthType.OAUTH1A

    @property
    def identity(self) -> tuple[str | None, str | None]:
        return self.consumer_key, self.access_token

    @property
    def username(self) -> str | None:
        return None  # IBKR does not say it in the login steps; /tickle's userId stands in

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> OAuth1aSettings:
        return parse_oauth1a(values)


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
    return text_of(values, "realm") or ("test_realm" if consumer_key == TEST_CONSUMER else DEFAULT_REALM)


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
    prime_hex = text_of(values, "dh_prime")
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


def parse_oauth1a(values: Mapping[str, Any]) -> OAuth1aSettings:
    """Validate every OAuth 1.0a field and decrypt the secret's prepend (nothing is sent)."""
    values = with_current_names(values)
    consumer_key = text_of(values, "consumer_key", "client_id")
    if not consumer_key:
        raise IbkrConfigError(
            "login", "the consumer key is missing; put it in the connection's login (or extra consumer_key)"
        )
    access_token = text_of(values, "access_token")
    if not access_token:
        raise IbkrConfigError(
            "access_token", "oauth1a needs the access token IBKR's self-service portal generated for you"
        )
    secret = text_of(values, "access_token_secret", "password")
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
    rule = (text_of(values, "oauth1_query_signing") or QuerySigning.GUIDE.value).lower()
    try:
        query_signing = QuerySigning(rule)
    except ValueError:
        raise IbkrConfigError("oauth1_query_signing", f"{rule!r} is not one of guide, ignore, url") from None
    return OAuth1aSettings(
        consumer_key=consumer_key,
        access_token=access_token,
        prepend=prepend,
        signature_key=signature_key,
        dh_prime=dh_prime,
        realm=realm,
        query_signing=query_signing,
    )
