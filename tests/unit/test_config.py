"""Connection settings are validated before any request, with errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ibkr_provider.client import AuthType, IbkrClientConfig, IbkrConfigError
from ibkr_provider.client.auth.jwt_signing import load_private_key
from ibkr_provider.client.keys import load_rsa_private_key
from ibkr_provider.client.pem import normalize_pem


@pytest.fixture(scope="module")
def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _oauth(pem: str, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "client_id": "client-1",
        "credential": "user1",
        "private_key": pem,
        "ip": "203.0.113.7",
    }
    values.update(overrides)
    return values


@pytest.mark.parametrize(
    "mangle",
    [
        lambda p: p.replace("\n", ""),  # a browser input dropped the newlines
        lambda p: p.replace("\n", " "),  # ... or turned them into spaces
        lambda p: p.replace("\n", "\\n"),  # a \n-escaped environment variable
        lambda p: "  " + p.replace("\n", "\r\n") + "  ",  # Windows line ends, stray blanks
    ],
)
def test_pem_is_rebuilt_from_mangled_input(pem: str, mangle: object) -> None:
    rebuilt = normalize_pem(mangle(pem))  # type: ignore[operator]
    assert rebuilt == pem
    load_private_key(rebuilt)


def test_config_defaults_and_derived_urls(pem: str) -> None:
    config = IbkrClientConfig.from_mapping(_oauth(pem))
    assert config.base_url == "https://api.ibkr.com"
    assert config.api_url == "https://api.ibkr.com/v1/api"
    assert config.auth.client_key_id == "main" and config.verify is True and config.timeout == 30  # type: ignore[attr-defined]
    assert pem not in repr(config) and "private_key" not in repr(config)


def test_base_url_accepts_api_suffix_and_bare_host(pem: str) -> None:
    assert IbkrClientConfig.from_mapping(_oauth(pem, base_url="https://1.api.ibkr.com/v1/api/")).base_url == (
        "https://1.api.ibkr.com"
    )
    assert IbkrClientConfig.from_mapping({"auth_type": "gateway", "base_url": "localhost:5000"}).base_url == (
        "https://localhost:5000"
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"client_id": None}, "login"),
        ({"private_key": None}, "private_key"),
        ({"credential": ""}, "credential"),
        ({"ip": None}, "ip"),
        ({"auth_type": "oauth1"}, "auth_type"),
        ({"timeout": "soon"}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"verify": "/no/such/ca.pem"}, "verify"),
        ({"base_url": "ftp://example.com"}, "host"),
        ({"private_key": "not a key"}, "private_key"),
        ({"private_key_path": "/no/such/key.pem"}, "private_key"),
        # non-finite or huge numbers (issue 30): each a named error, never "Unexpected ..."
        ({"session_refresh_lead": "nan"}, "session_refresh_lead"),
        ({"tickle_interval": "inf"}, "tickle_interval"),
        ({"tickle_interval": "1e9"}, "tickle_interval"),
        ({"timeout": "nan"}, "timeout"),
        ({"timeout": "inf"}, "timeout"),
        ({"max_retries": "nan"}, "max_retries"),
        ({"max_retries": "inf"}, "max_retries"),
        ({"max_retry_seconds": "-inf"}, "max_retry_seconds"),
        ({"rate_limit": "nan"}, "rate_limit"),
        ({"rate_limit": "inf"}, "rate_limit"),
        ({"timeout": True}, "timeout"),
        ({"base_url": "http://[::1"}, "host"),
        ({"base_url": "http://example.com:99999"}, "host"),
        ({"base_url": "http://example.com", "port": 70000}, "port"),
        ({"account_id": "DU1234567/../U3456789"}, "account_id"),
        ({"account_id": "U 1"}, "account_id"),
    ],
)
def test_bad_settings_name_the_field(pem: str, overrides: dict[str, object], field: str) -> None:
    with pytest.raises(IbkrConfigError) as excinfo:
        IbkrClientConfig.from_mapping(_oauth(pem, **overrides))
    assert excinfo.value.field == field or excinfo.value.field.startswith(field)
    assert str(excinfo.value).startswith(excinfo.value.field)


def test_key_errors_never_echo_the_key(pem: str) -> None:
    """One body line corrupted (the BEGIN/END lines intact, so the PEM is found and parsed): the
    error says what is wrong and shows no line of the key."""
    lines = pem.splitlines()
    lines[5] = lines[5][:20] + "!" + lines[5][21:]
    broken = normalize_pem("\n".join(lines))
    with pytest.raises(IbkrConfigError) as excinfo:
        load_private_key(broken)
    message = str(excinfo.value)
    assert "not a valid PEM private key" in message
    assert not [line for line in [*lines, *pem.splitlines()] if line in message]


def test_non_rsa_key_is_refused() -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    with pytest.raises(IbkrConfigError, match="RSA"):
        load_private_key(ec_pem)


def test_private_key_path_and_verify_flags(pem: str, tmp_path: Path) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_text(pem)
    config = IbkrClientConfig.from_mapping(
        _oauth(pem, private_key=None, private_key_path=str(key_file), verify="false")
    )
    assert config.auth.private_key_pem == pem and config.verify is False  # type: ignore[attr-defined]
    with pytest.raises(IbkrConfigError, match="not both"):
        IbkrClientConfig.from_mapping(_oauth(pem, private_key_path=str(key_file)))
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert IbkrClientConfig.from_mapping(_oauth(pem, verify=str(ca))).verify == str(ca)


def test_gateway_needs_no_credentials() -> None:
    config = IbkrClientConfig.from_mapping({"auth_type": "gateway", "base_url": "https://localhost:5000"})
    assert config.auth_type is AuthType.GATEWAY and config.identity == (None, None)


def test_a_key_is_parsed_once_per_process_and_errors_still_name_each_field(pem: str) -> None:
    """Every client built loads its keys, and a 2048-bit key's consistency check costs ~50 ms:
    the same PEM text gives the same parsed key; a bad key is refused every time, under the
    field it came from."""
    assert load_rsa_private_key(pem, "private_key") is load_rsa_private_key(pem, "signature_key")
    for field in ("signature_key", "encryption_key"):
        with pytest.raises(IbkrConfigError) as excinfo:
            load_rsa_private_key(pem.replace("PRIVATE KEY", "PUBLIC KEY"), field)
        assert excinfo.value.field == field
