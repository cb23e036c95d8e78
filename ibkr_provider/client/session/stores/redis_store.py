"""The Redis session store: shared across hosts (CeleryExecutor), for ``session_cache =
redis://host:port/db`` (install the ``redis`` extra).

One Redis key per session record, a Redis lock whose lease a watchdog renews while it is held
(so a killed worker's lock lapses on its own and never wedges the others), pacing slots claimed
atomically by a Lua script, and single-use stashes read with ``GETDEL``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from ibkr_provider.client.errors import IbkrConfigError, IbkrErrorCode, IbkrSessionError
from ibkr_provider.client.fields import redacted_url
from ibkr_provider.client.session.record import Cipher, SessionRecord
from ibkr_provider.client.session.stores.base import Lease, SessionStore, lock_timeout

log = logging.getLogger(__name__)

#: A Redis lock expires on its own this long after its holder stops renewing it, so a killed
#: worker never wedges the others; a live holder renews it every third of that.
REDIS_LOCK_TTL_SECONDS = 30.0

#: Every Redis call gives up after these (seconds): a Redis that accepts connections and never
#: answers once blocked a task for 20 s and more; a timeout is a named error a retry may fix.
REDIS_CONNECT_TIMEOUT_SECONDS = 5.0
REDIS_READ_TIMEOUT_SECONDS = 10.0

#: Atomically claim a pacing slot in Redis (milliseconds): slot = max(earliest, next free).
RESERVE_SLOT_LUA = """
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(tonumber(ARGV[1]), next_free)
redis.call('SET', KEYS[1], string.format('%d', slot + tonumber(ARGV[2])), 'PX', tonumber(ARGV[3]))
return string.format('%d', slot)
"""


class RedisLease(Lease):
    """A Redis lock renewed by a watchdog thread while held (redis-py's ``Lock.reacquire``), so a
    placement that takes longer than the lease keeps it; it lapses only if the holder's process
    stops (or Redis loses the key), and :meth:`check` then refuses to go on."""

    def __init__(self, key: str, lock: Any, lease_seconds: float) -> None:
        super().__init__(key)
        self._lock = lock
        self._period = max(0.05, lease_seconds / 3)
        self._lost = threading.Event()
        self._done = threading.Event()
        self._watchdog = threading.Thread(target=self._renew, name="ibkr-lock-lease", daemon=True)

    @property
    def held(self) -> bool:
        return not self._lost.is_set()

    def start(self) -> None:
        self._watchdog.start()

    def _renew(self) -> None:
        from redis.exceptions import LockError, RedisError

        while not self._done.wait(self._period):
            try:
                self._lock.reacquire()
            except (LockError, RedisError) as exc:
                # Unrenewed, the lease lapses on its own; whoever holds it must stop before
                # anything irreversible (Lease.check).
                self._lost.set()
                log.warning(
                    "lost the Redis lock %s (%s): another process may hold it now",
                    self.key,
                    type(exc).__name__,
                )
                return

    def end(self) -> None:
        from redis.exceptions import LockError, RedisError

        self._done.set()
        self._watchdog.join()
        if self._lost.is_set():
            return
        try:
            self._lock.release()
        except LockError:
            log.warning("the Redis lock %s had lapsed before its release", self.key)
        except RedisError as exc:
            log.warning(
                "could not release the Redis lock %s (%s); it lapses on its own", self.key, type(exc).__name__
            )


class RedisSessionStore(SessionStore):
    """Shared across hosts through Redis (install the ``redis`` extra)."""

    def __init__(
        self,
        url: str,
        cipher: Cipher | None = None,
        *,
        lease_seconds: float = REDIS_LOCK_TTL_SECONDS,
        connect_timeout: float = REDIS_CONNECT_TIMEOUT_SECONDS,
        read_timeout: float = REDIS_READ_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(cipher)
        try:
            import redis
        except ImportError:
            raise IbkrConfigError(
                "session_cache",
                "a redis:// cache needs the redis client: pip install 'airflow-provider-ibkr[redis]'",
            ) from None
        self._url = redacted_url(url)
        try:
            self._redis = redis.Redis.from_url(
                url,
                socket_connect_timeout=connect_timeout,
                socket_timeout=read_timeout,
            )
        except ValueError as exc:
            raise IbkrConfigError(
                "session_cache",
                f"{self._url} is not a Redis URL ({str(exc)[:120]}); e.g. redis://host:6379/1",
            ) from None
        self._lease_seconds = lease_seconds
        self._timeouts = (connect_timeout, read_timeout)
        self._reserve = self._redis.register_script(RESERVE_SLOT_LUA)

    @contextlib.contextmanager
    def _talking(self, what: str) -> Iterator[None]:
        """Redis failures as the provider's error, naming ``session_cache`` and the URL without
        its password. Transient: Redis may be restarting, and the next try may reach it."""
        from redis.exceptions import RedisError

        try:
            yield
        except RedisError as exc:
            raise IbkrSessionError(
                f"session_cache: Redis at {self._url} failed while {what} ({type(exc).__name__}); "
                f"every call waits at most {self._timeouts[0]:g} s to connect and "
                f"{self._timeouts[1]:g} s for an answer",
                code=IbkrErrorCode.SESSION_CACHE,
                hint="the connection field 'session_cache' and that its Redis is up and reachable",
            ) from None

    def _name(self, key: str, part: str) -> str:
        return f"ibkr:{key}:{part}"

    def load(self, key: str) -> SessionRecord | None:
        with self._talking("reading the session record"):
            data = self._redis.get(self._name(key, "session"))
        return self._open(data) if isinstance(data, bytes) else None

    def save(self, key: str, record: SessionRecord) -> None:
        with self._talking("saving the session record"):
            self._redis.set(self._name(key, "session"), self._seal(record))

    def delete(self, key: str) -> None:
        with self._talking("deleting the session record"):
            self._redis.delete(self._name(key, "session"), self._name(key, "used"))

    def read_marker(self, key: str) -> str | None:
        with self._talking("reading which session holds the brokerage session"):
            value = self._redis.get(self._name(key, "marker"))
        return value.decode() if isinstance(value, bytes) and value else None

    def write_marker(self, key: str, value: str) -> None:
        with self._talking("recording which session holds the brokerage session"):
            self._redis.set(self._name(key, "marker"), value)

    @contextlib.contextmanager
    def _acquire(self, key: str, timeout: float) -> Iterator[Lease]:
        # Not thread-local: the lease's watchdog thread renews the token the holder acquired.
        lock = self._redis.lock(
            self._name(key, "lock"),
            timeout=self._lease_seconds,
            blocking_timeout=timeout,
            sleep=0.02,
            thread_local=False,
        )
        with self._talking("taking a lock"):
            acquired = lock.acquire()
        if not acquired:
            raise lock_timeout(key, timeout)
        lease = RedisLease(key, lock, self._lease_seconds)
        lease.start()
        try:
            yield lease
        finally:
            lease.end()

    def reserve_slot(self, key: str, bucket: str, *, earliest_ms: int, interval_ms: int) -> int:
        name = self._name(key, f"pace:{bucket}")
        # The next free time expires a minute after it passes: an idle bucket leaves nothing behind.
        ttl_ms = interval_ms + 60_000
        with self._talking("claiming a pacing slot"):
            return int(self._reserve(keys=[name], args=[earliest_ms, interval_ms, ttl_ms]))

    def mark_used(self, key: str, when: float) -> None:
        with self._talking("marking the session used"):
            self._redis.set(self._name(key, "used"), repr(when))

    def _put(self, key: str, data: bytes, ttl_seconds: float) -> None:
        with self._talking("keeping a pending consent"):
            self._redis.set(self._name(key, "stash"), data, px=max(1, int(ttl_seconds * 1000)))

    def _pop(self, key: str) -> bytes | None:
        with self._talking("taking a pending consent"):
            data = self._redis.getdel(self._name(key, "stash"))
        return data if isinstance(data, bytes) else None

    def last_used(self, key: str) -> float:
        with self._talking("reading when the session was used"):
            value = self._redis.get(self._name(key, "used"))
        try:
            return float(value) if isinstance(value, bytes) else 0.0
        except ValueError:
            return 0.0

    def close(self) -> None:
        self._redis.close()
