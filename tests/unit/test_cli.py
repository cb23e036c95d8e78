"""``ibkr-provider oauth1-keys``: the local half of IBKR's self-service OAuth 1.0a set-up."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from ibkr_sandbox.oauth1 import RFC3526_PRIME_2048

from ibkr_provider.cli import RFC3526_GROUP14_PRIME, main
from ibkr_provider.client.config import IbkrClientConfig
from ibkr_provider.client.settings.oauth1a import OAuth1aSettings


def test_the_keys_and_dh_parameters_make_a_valid_connection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ibkr-oauth"
    assert main(["oauth1-keys", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "public_signature.pem" in printed and "upload" in printed
    for name in ("private_signature.pem", "private_encryption.pem"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    assert (out / "dhparam.pem").read_text().startswith("-----BEGIN DH PARAMETERS-----")
    # What IBKR would hand back: a secret encrypted to the uploaded encryption key.
    public = serialization.load_pem_public_key((out / "public_encryption.pem").read_bytes())
    assert isinstance(public, rsa.RSAPublicKey)
    secret = base64.b64encode(public.encrypt(b"\x2a" * 32, padding.PKCS1v15())).decode()
    config = IbkrClientConfig.from_mapping(
        {
            "auth_type": "oauth1a",
            "client_id": "MYCONSUMR",
            "password": secret,
            "access_token": "0123456789abcdef0123",
            "signature_key_path": str(out / "private_signature.pem"),
            "encryption_key_path": str(out / "private_encryption.pem"),
            "dh_params_path": str(out / "dhparam.pem"),
        }
    )
    settings = config.auth
    assert isinstance(settings, OAuth1aSettings) and settings.prepend == "2a" * 32
    assert settings.dh_prime == RFC3526_GROUP14_PRIME == RFC3526_PRIME_2048
    assert settings.realm == "limited_poa"
    with pytest.raises(SystemExit, match="already holds"):
        main(["oauth1-keys", "--out", str(out)])
