"""Connect IBKR's consent state: bound to user and request token, expiring; stashed records are
encrypted when there is a cipher. (Single use across processes and hosts: tests/integration.)

The consent module is imported in the tests, not at collection: its package is the Airflow
plugin, and importing Airflow costs every xdist worker about 3 s of CPU before its first test.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography.fernet import Fernet

from ibkr_provider.client.session.stores.file import FileSessionStore
from ibkr_provider.client.session.stores.memory import MemorySessionStore

if TYPE_CHECKING:
    from ibkr_provider.plugins.consent import PendingConsent


def _pending(**changes: object) -> PendingConsent:
    from ibkr_provider.plugins.consent import PendingConsent

    values: dict[str, object] = {
        "user_id": "admin",
        "profile_conn_id": "ibkr_consumer",
        "target_conn_id": "ibkr_connected",
        "request_token": "rt-123456",
        "expires_at": time.time() + 86400,
    }
    values.update(changes)
    return PendingConsent(**values)  # type: ignore[arg-type]


def test_states_are_random_and_stored_under_their_hash() -> None:
    from ibkr_provider.plugins.consent import new_state, state_key

    first, second = new_state(), new_state()
    assert first != second and len(first) >= 43  # 256 bits, url-safe base64
    assert first not in state_key(first) and state_key(first) == state_key(first)


@pytest.mark.parametrize(
    ("expires_in", "user", "token", "says"),
    [
        (None, "admin", "rt-123456", "no longer valid"),  # no record: taken, or never stashed
        (-1.0, "admin", "rt-123456", "longer than 10 minutes"),
        (86400.0, "mallory", "rt-123456", "another Airflow user"),
        (86400.0, "admin", "rt-other", "another request"),
    ],
)
def test_a_callback_that_does_not_match_is_refused(
    expires_in: float | None, user: str, token: str, says: str
) -> None:
    from ibkr_provider.plugins.consent import ConsentRefused, seal, unseal

    data = None if expires_in is None else seal(_pending(expires_at=time.time() + expires_in))
    with pytest.raises(ConsentRefused, match=says):
        unseal(data, user, token)


def test_a_matching_callback_gets_its_consent() -> None:
    from ibkr_provider.plugins.consent import seal, unseal

    assert unseal(seal(_pending()), "admin", "rt-123456").target_conn_id == "ibkr_connected"


def test_the_user_connection_refers_to_the_consumer_and_adds_the_token() -> None:
    """No key material is copied into a user's connection (issue 30): it names the profile."""
    from ibkr_provider.plugins.consent import user_connection_fields

    profile = {
        "auth_type": "oauth1a",
        "signature_key": "old-name-pem",
        "encryption_private_key": "pem",
        "dh_params": "dh",
        "realm": "limited_poa",
        "authorize_url": "u",
        "callback_url": "c",
        "session_cache": "redis://r/1",
    }
    extra = user_connection_fields(
        "ibkr_consumer", profile, {"auth_type": "oauth1a", "access_token": "access-1"}
    )
    assert extra == {
        "auth_type": "oauth1a",
        "session_cache": "redis://r/1",
        "consumer_profile": "ibkr_consumer",
        "access_token": "access-1",
    }


def test_an_oauth2_grant_refers_to_the_app_profile_and_keeps_only_its_own_token() -> None:
    """The app's key, its authorization-server settings and any username the profile holds stay
    in the profile; the user's connection gets the refresh token and the token endpoint."""
    from ibkr_provider.plugins.consent import user_connection_fields

    profile = {
        "auth_type": "oauth2",
        "private_key": "pem",
        "client_key_id": "main",
        "credential": "the-apps-own-user",
        "ip": "203.0.113.5",
        "issuer": "https://auth.example",
        "scope": "sso-sessions.write",
        "account_id": "DU1234567",
    }
    grant = {"auth_type": "oauth2", "refresh_token": "rt-1", "token_url": "https://auth.example/token"}
    assert user_connection_fields("ibkr_oauth2_app", profile, grant) == {
        "auth_type": "oauth2",
        "client_key_id": "main",
        "ip": "203.0.113.5",
        "account_id": "DU1234567",
        "consumer_profile": "ibkr_oauth2_app",
        "refresh_token": "rt-1",
        "token_url": "https://auth.example/token",
    }


def test_stashed_records_are_encrypted_and_expire(tmp_path: Path) -> None:
    cipher = Fernet(Fernet.generate_key())
    store = FileSessionStore(tmp_path, cipher)
    store.stash("connect-y", b"secret record", 60)
    (stored,) = tmp_path.iterdir()
    assert b"secret record" not in stored.read_bytes()
    assert store.take("connect-y") == b"secret record" and store.take("connect-y") is None
    store.stash("connect-z", b"late", 0.05)
    memory = MemorySessionStore()
    memory.stash("connect-z", b"late", 0.05)
    time.sleep(0.1)
    assert store.take("connect-z") is None and memory.take("connect-z") is None


def test_abandoned_consents_are_swept_from_disk(tmp_path: Path) -> None:
    store = FileSessionStore(tmp_path, Fernet(Fernet.generate_key()))
    store.stash("connect-abandoned", b"never taken", 0.05)
    time.sleep(0.1)
    store.stash("connect-new", b"pending", 60)
    assert sorted(p.name for p in tmp_path.glob("*.stash")) == ["connect-new.stash"]


@pytest.mark.parametrize("given", ["é", "\udcff", "x" * 64, ""])
def test_secrets_with_any_characters_compare_without_an_error(given: str) -> None:
    """compare_digest raises TypeError on a str with non-ASCII characters: a crafted CSRF token
    or state was a 500 (issue 30)."""
    from ibkr_provider.plugins.consent import same_secret

    assert same_secret(given, "a" * 64) is False
    assert same_secret(given, given) is True
