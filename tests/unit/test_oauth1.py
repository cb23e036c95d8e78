"""IBKR's OAuth 1.0a, against known answers computed outside the provider (see
tests/support/oauth1_vectors.py), and the live session token against an independent
computation with Python's pow and the standard library's hmac."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from ibkr_sandbox.oauth1 import RFC3526_PRIME_2048

from ibkr_provider.client.auth.oauth1a.signing import (
    LiveSessionTokenExchange,
    base_string,
    java_bytes,
    request_signature,
    signed_request_header,
)
from ibkr_provider.client.errors import IbkrAuthError, IbkrConfigError
from ibkr_provider.client.settings.oauth1a import OAuth1aSettings, QuerySigning, decrypt_prepend
from tests.support import oauth1_vectors as kat

P = RFC3526_PRIME_2048
BROKEN_DH = "-----BEGIN DH PARAMETERS-----\nAAAA\n-----END DH PARAMETERS-----\n"


def _credentials(**overrides: object) -> OAuth1aSettings:
    key = serialization.load_pem_private_key(kat.SIGNATURE_KEY_PEM.encode(), password=None)
    assert isinstance(key, RSAPrivateKey)
    values: dict[str, object] = {
        "consumer_key": kat.CONSUMER_KEY,
        "access_token": kat.ACCESS_TOKEN,
        "prepend": kat.PREPEND,
        "signature_key": key,
        "dh_prime": P,
    }
    values.update(overrides)
    return OAuth1aSettings(**values)  # type: ignore[arg-type]


def test_the_live_session_token_request_matches_the_known_answer() -> None:
    exchange = LiveSessionTokenExchange(_credentials(), exponent=kat.EXPONENT)
    params = exchange.request_params(timestamp=kat.LST_TIMESTAMP, nonce=kat.LST_NONCE)
    assert base_string("POST", kat.URL, params, prepend=kat.PREPEND) == kat.LST_BASE_STRING
    assert exchange.sign(kat.URL, params) == kat.LST_SIGNATURE  # openssl dgst -sha256 -sign


def test_a_signed_request_matches_the_known_answer() -> None:
    creds = _credentials()
    oauth = {
        "oauth_consumer_key": kat.CONSUMER_KEY,
        "oauth_nonce": kat.REQUEST_NONCE,
        "oauth_signature_method": "HMAC-SHA256",
        "oauth_timestamp": str(kat.REQUEST_TIMESTAMP),
        "oauth_token": kat.ACCESS_TOKEN,
    }
    params = {**oauth, **kat.REQUEST_QUERY}
    assert base_string("GET", kat.REQUEST_URL, params) == kat.REQUEST_BASE_STRING
    assert request_signature(kat.REQUEST_LST, "GET", kat.REQUEST_URL, params) == kat.REQUEST_SIGNATURE
    header = signed_request_header(
        creds,
        kat.REQUEST_LST,
        method="GET",
        url=kat.REQUEST_URL,
        query=kat.REQUEST_QUERY,
        timestamp=kat.REQUEST_TIMESTAMP,
        nonce=kat.REQUEST_NONCE,
    )
    assert header == (
        'OAuth realm="limited_poa", oauth_consumer_key="KATCONSMR", '
        f'oauth_nonce="{kat.REQUEST_NONCE}", oauth_signature="{kat.REQUEST_SIGNATURE}", '
        'oauth_signature_method="HMAC-SHA256", oauth_timestamp="1767225601", '
        f'oauth_token="{kat.ACCESS_TOKEN}"'
    )


def test_the_query_rule_changes_what_is_signed() -> None:
    signatures = {
        rule: signed_request_header(
            _credentials(query_signing=rule),
            kat.REQUEST_LST,
            method="GET",
            url=kat.REQUEST_URL,
            query=kat.REQUEST_QUERY,
            timestamp=kat.REQUEST_TIMESTAMP,
            nonce=kat.REQUEST_NONCE,
        )
        for rule in QuerySigning
    }
    assert kat.REQUEST_SIGNATURE in signatures[QuerySigning.GUIDE]
    assert len(set(signatures.values())) == 3


def _expected_lst(b_exponent: int) -> tuple[str, str, str, bool]:
    """IBKR's side, written independently: B, K, the LST and its signature; and whether K's
    top bit is set (Java then prepends a zero byte)."""
    a_public = pow(2, kat.EXPONENT, P)
    shared = pow(a_public, b_exponent, P)
    k_bytes = shared.to_bytes((shared.bit_length() + 7) // 8, "big")
    top_bit = k_bytes[0] >= 0x80
    if top_bit:
        k_bytes = b"\x00" + k_bytes
    lst = hmac.new(k_bytes, bytes.fromhex(kat.PREPEND), hashlib.sha1).digest()
    signature = hmac.new(lst, kat.CONSUMER_KEY.encode(), hashlib.sha1).hexdigest()
    return format(pow(2, b_exponent, P), "x"), base64.b64encode(lst).decode(), signature, top_bit


def _find(condition: Callable[[int], bool]) -> int:
    return next(b for b in range(3, 10_000) if condition(b))


@pytest.mark.parametrize("top_bit", [True, False])
def test_the_live_session_token_with_and_without_the_sign_byte(top_bit: bool) -> None:
    b = _find(lambda b: _expected_lst(b)[3] is top_bit)
    b_hex, lst, signature, _ = _expected_lst(b)
    exchange = LiveSessionTokenExchange(_credentials(), exponent=kat.EXPONENT)
    assert exchange.live_session_token(b_hex, signature) == lst


def test_an_odd_length_dh_response_works() -> None:
    b = _find(lambda b: len(format(pow(2, b, P), "x")) % 2 == 1)
    b_hex, lst, signature, _ = _expected_lst(b)
    assert len(b_hex) % 2 == 1
    assert (
        LiveSessionTokenExchange(_credentials(), exponent=kat.EXPONENT).live_session_token(b_hex, signature)
        == lst
    )


def test_a_signature_mismatch_names_the_likely_causes() -> None:
    b_hex, _, signature, _ = _expected_lst(7)
    other = _credentials(prepend="ff" * 16)  # as with the wrong encryption key
    with pytest.raises(IbkrAuthError, match="encryption key is not the one") as excinfo:
        LiveSessionTokenExchange(other, exponent=kat.EXPONENT).live_session_token(b_hex, signature)
    assert "dhparam.pem" in str(excinfo.value) and excinfo.value.permanent


def test_java_bytes() -> None:
    assert (
        java_bytes(0x7F) == b"\x7f" and java_bytes(0x80) == b"\x00\x80" and java_bytes(0x0100) == b"\x01\x00"
    )


@pytest.fixture(scope="module")
def encryption() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_the_prepend_comes_from_the_secret(encryption: rsa.RSAPrivateKey) -> None:
    secret = base64.b64encode(
        encryption.public_key().encrypt(b"\x01\x02prepend", padding.PKCS1v15())
    ).decode()
    assert decrypt_prepend(encryption, secret) == b"\x01\x02prepend".hex()
    with pytest.raises(IbkrConfigError, match="copied incompletely") as excinfo:
        decrypt_prepend(encryption, secret[:-8])  # still base64, too short
    assert excinfo.value.field == "password"
    with pytest.raises(IbkrConfigError, match="not valid base64"):
        decrypt_prepend(encryption, secret[:-1])


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        (
            {"dh_params": "-----BEGIN DH PARAMETERS-----\nAAAA\n-----END DH PARAMETERS-----\n"},
            "dh_params",
            "cannot read",
        ),
        ({"dh_params": None, "dh_prime": "zz"}, "dh_prime", "hexadecimal"),
        ({"dh_params": None}, "dh_params", "needs the DH parameters"),
        ({"signature_key": "PUBLIC"}, "signature_private_key", "not a valid PEM private key"),  # old name
        ({"signature_private_key": "PUBLIC"}, "signature_private_key", "not a valid PEM private key"),
        ({"access_token": None}, "access_token", "access token"),
        ({"client_id": None}, "login", "consumer key is missing"),
        ({"oauth1_query_signing": "sometimes"}, "oauth1_query_signing", "guide, ignore, url"),
    ],
)
def test_bad_oauth1a_fields_are_named(
    change: dict[str, object], field: str, text: str, encryption: rsa.RSAPrivateKey
) -> None:
    from asn1crypto import algos, pem

    from ibkr_provider.client.config import IbkrClientConfig

    encrypted = encryption.public_key().encrypt(b"p" * 16, padding.PKCS1v15())
    private = encryption.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        encryption.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    values: dict[str, object] = {
        "auth_type": "oauth1a",
        "client_id": "CONSUMERK",
        "password": base64.b64encode(encrypted).decode(),
        "access_token": "t" * 20,
        "signature_key": kat.SIGNATURE_KEY_PEM,
        "encryption_key": private,
        "dh_params": pem.armor("DH PARAMETERS", algos.DHParameters({"p": P, "g": 2}).dump()).decode(),
    }
    values.update({k: (public if v == "PUBLIC" else v) for k, v in change.items()})
    values = {k: v for k, v in values.items() if v is not None}
    with pytest.raises(IbkrConfigError, match=text) as excinfo:
        IbkrClientConfig.from_mapping(values)
    assert excinfo.value.field == field


def test_a_generator_other_than_two_is_refused() -> None:
    from asn1crypto import algos, pem

    from ibkr_provider.client.settings.oauth1a import parse_dh_prime

    five = pem.armor("DH PARAMETERS", algos.DHParameters({"p": P, "g": 5}).dump()).decode()
    with pytest.raises(IbkrConfigError, match="the generator is 5; IBKR uses 2"):
        parse_dh_prime({"dh_params": five})


def _x942(prime: int) -> str:
    """The parameters as recent ``cryptography`` writes them (label "X9.42 DH PARAMETERS")."""
    from asn1crypto import keys, pem

    domain = keys.DomainParameters({"p": prime, "g": 2, "q": (prime - 1) // 2})
    return pem.armor("X9.42 DH PARAMETERS", domain.dump()).decode()


def test_x942_dh_parameters_are_read() -> None:
    from ibkr_provider.client.settings.oauth1a import parse_dh_prime

    assert parse_dh_prime({"dh_params": _x942(P)}) == P
    assert parse_dh_prime({"dh_params": _x942(P).replace("\n", " ")}) == P  # pasted into one line


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ({"dh_params": "SMALL"}, "1024-bit prime is not accepted"),
        ({"dh_prime": "f" * 200_001}, "longer than a 8192-bit number"),
        ({"dh_prime": format(1 << 8200 | 1, "x")}, "longer than a 8192-bit number"),
        ({"dh_prime": format(P + 1, "x")}, "even"),
        ({"dh_prime": format(P + 2, "x")}, "not a prime"),
        ({"dh_params": "RSA"}, "not a prime"),  # an odd 2048-bit composite without small factors
        ({"dh_params": "BIG"}, "not accepted"),
    ],
)
def test_dh_primes_are_checked_before_use(values: dict[str, str], text: str) -> None:
    from asn1crypto import algos, pem

    from ibkr_provider.client.settings.oauth1a import parse_dh_prime

    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()
    made = {
        "RSA": lambda: _x942(numbers.p * numbers.q),
        "SMALL": lambda: _x942(numbers.p),  # a 1024-bit prime
        "BIG": lambda: pem.armor(
            "DH PARAMETERS", algos.DHParameters({"p": (1 << 20_000) + 1, "g": 2}).dump()
        ).decode(),
    }
    if values.get("dh_params") in made:
        values = {"dh_params": made[values["dh_params"]]()}
    with pytest.raises(IbkrConfigError, match=text):
        parse_dh_prime(values)
