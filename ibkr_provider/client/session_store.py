"""Deprecated alias: the session store is now :mod:`ibkr_provider.client.record` (the record)
and :mod:`ibkr_provider.client.stores` (file, memory; Redis in
:mod:`ibkr_provider.client.redis_store`). Removed in 0.3."""

import warnings

from ibkr_provider.client.record import Cipher, SessionRecord, session_key
from ibkr_provider.client.redis_store import RedisSessionStore
from ibkr_provider.client.stores import (
    FileSessionStore,
    MemorySessionStore,
    SessionStore,
    build_session_store,
)

warnings.warn(
    "ibkr_provider.client.session_store is now ibkr_provider.client.record and ibkr_provider.client.stores",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "Cipher",
    "FileSessionStore",
    "MemorySessionStore",
    "RedisSessionStore",
    "SessionRecord",
    "SessionStore",
    "build_session_store",
    "session_key",
]
