"""A fingerprint of the credentials a session is opened with: the session record carries it,
never the key.

The shared session is keyed by (API host, client id or consumer key, username or access token),
not by the key or secret. A fixed typo or a rotated key therefore found the cached session of the
old one and reported "Connected", and the failure surfaced at the next renewal, usually in an
unattended nightly run. With the fingerprint in the record, a process whose credentials differ
does not use the session (it opens its own), and a connection's Test proves the credentials in
front of it.

What goes in: OAuth 2.0, the client id, key id, username, IP and the public half of the private
key; OAuth 1.0a, the consumer key, access token, the public half of the signature key, the
prepend (which the encryption key decrypts from the access token secret, so it covers both), the
DH prime and the realm. Only a SHA-256 of them is kept.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization

from ibkr_provider.client.keys import load_rsa_private_key
from ibkr_provider.client.settings.oauth1a import OAuth1aSettings
from ibkr_provider.client.settings.oauth2 import OAuth2Settings
from ibkr_provider.client.settings.oauth2_user import OAuth2UserSettings

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from ibkr_provider.client.config import IbkrClientConfig


def _public_der(key: RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def credential_fingerprint(config: IbkrClientConfig) -> str:
    """16 hex digits naming the credentials of ``config`` (see the module docstring)."""
    parts: list[bytes] = [config.auth_type.value.encode(), config.base_url.encode()]
    settings = config.auth
    if isinstance(settings, OAuth2Settings):
        key = load_rsa_private_key(settings.private_key_pem, "private_key")
        texts = (settings.client_id, settings.client_key_id, settings.credential, settings.ip)
        parts += [*(t.encode() for t in texts), _public_der(key)]
    elif isinstance(settings, OAuth2UserSettings):
        key = load_rsa_private_key(settings.private_key_pem, "private_key")
        grant = (
            settings.client_id,
            settings.client_key_id,
            settings.grant_id,
            settings.ip,
            settings.token_url,
            settings.user_session,
        )
        parts += [*(t.encode() for t in grant), _public_der(key)]
    elif isinstance(settings, OAuth1aSettings):
        creds = settings
        parts += [
            creds.consumer_key.encode(),
            creds.access_token.encode(),
            creds.prepend.encode(),
            _public_der(creds.signature_key),
            str(creds.dh_prime).encode(),
            creds.realm.encode(),
        ]
    return hashlib.sha256(b"\x1f".join(parts)).hexdigest()[:16]
