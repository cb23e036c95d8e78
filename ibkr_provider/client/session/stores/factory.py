"""The session store a ``session_cache`` value names (the one place that knows every backend)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from ibkr_provider.client.errors import IbkrConfigError
from ibkr_provider.client.fields import redacted_url
from ibkr_provider.client.session.record import Cipher
from ibkr_provider.client.session.stores.base import SessionStore
from ibkr_provider.client.session.stores.file import FileSessionStore
from ibkr_provider.client.session.stores.memory import MemorySessionStore


def build_session_store(spec: str | None, *, default_dir: Path, cipher: Cipher | None = None) -> SessionStore:
    """The store for a ``session_cache`` value: ``file``, ``file:///dir``, ``memory`` or ``redis://...``."""
    text = (spec or "file").strip()
    lowered = text.lower()
    if lowered == "memory":
        return MemorySessionStore()
    if lowered == "file":
        return FileSessionStore(default_dir, cipher)
    if lowered.startswith("file://"):
        path = urlsplit(text).path
        if not path:
            raise IbkrConfigError(
                "session_cache", "file:// needs an absolute directory, e.g. file:///var/cache/ibkr"
            )
        return FileSessionStore(Path(path), cipher)
    if lowered.startswith(("redis://", "rediss://", "unix://")):
        from ibkr_provider.client.session.stores.redis_store import RedisSessionStore  # needs the redis extra

        return RedisSessionStore(text, cipher)
    raise IbkrConfigError(
        "session_cache",
        f"{redacted_url(text)!r} is not a cache; use file, file:///dir, memory or redis://host:6379/0",
    )
