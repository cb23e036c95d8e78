"""The session cache as a :class:`~ibkr_provider.client.auth.base.TokenKeeper`: a user's
rotated refresh token is kept next to the session it opens (same backend, same encryption), under
its own lock, so every process and host renews the grant one at a time and reads the latest."""

from __future__ import annotations

from contextlib import AbstractContextManager

from ibkr_provider.client.session.stores.base import SessionStore


class StoreTokenKeeper:
    """One session's kept secret in ``store``."""

    def __init__(self, store: SessionStore, session_key: str) -> None:
        self._store = store
        self._key = f"{session_key}-grant"

    def locked(self) -> AbstractContextManager[object]:
        return self._store.lock(self._key)

    def read(self) -> str | None:
        return self._store.read_secret(self._key)

    def write(self, value: str) -> None:
        self._store.write_secret(self._key, value)
