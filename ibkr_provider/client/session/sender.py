"""One request on one session: pace, sign, send. The session's own steps (set-up, recovery,
keep-alive) and the API's request pipeline both send through it.

Every attempt first takes a slot from the shared pacer (IBKR's limits are per username), then
the auth strategy signs it (OAuth 1.0a signs each attempt with a fresh nonce and its send time,
:meth:`SessionSender.send_second`), then the transport sends it with its bounded retries.
Whether an ambiguous failure may be retried is the caller's to say: order placement is not
idempotent. A process marks the session used at most every few seconds (a store write), so
keep-alive knows when every process has been idle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ibkr_provider.client.auth.base import AuthStrategy
from ibkr_provider.client.http.pacing import Pacer
from ibkr_provider.client.http.transport import HttpTransport
from ibkr_provider.client.session.record import SessionRecord
from ibkr_provider.client.session.stores.base import SessionStore

#: A process records "session used" in the store at most this often (it is a write).
USE_MARK_INTERVAL_SECONDS = 5.0


class SessionSender:
    """Sends ``/v1/api`` requests on a given session record."""

    def __init__(
        self,
        *,
        api_url: str,
        auth: AuthStrategy,
        transport: HttpTransport,
        pacer: Pacer,
        store: SessionStore,
        key: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_url = api_url
        self.auth = auth
        self.transport = transport
        self.pacer = pacer
        self._store = store
        self._key = key
        self._clock = clock
        self._last_mark = 0.0

    def close(self) -> None:
        """Wake every request waiting for a pacing slot (it raises; nothing is sent) and release
        the HTTP connections."""
        self.pacer.close()
        self.transport.close()

    def send_on(
        self,
        record: SessionRecord,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        idempotent: bool = True,
    ) -> Any:
        """One paced, signed ``/v1/api`` request on ``record``'s session, with the transport's
        retries and no session recovery."""
        api_path = "/" + path.lstrip("/")
        url = f"{self.api_url}{api_path}"
        query = {key: str(value) for key, value in (params or {}).items()}

        def prepare() -> Mapping[str, str]:
            timestamp = self.send_second(self.pacer.acquire(method, api_path))
            return self.auth.headers_for(
                record.bearer, method=method, url=url, query=query, timestamp=timestamp
            )

        result = self.transport.send(
            method, url, params=params, json_body=json_body, idempotent=idempotent, prepare=prepare
        )
        now = self._clock()
        if now - self._last_mark >= USE_MARK_INTERVAL_SECONDS:
            self._last_mark = now
            self._store.mark_used(self._key, now)
        return result

    def stamp(self) -> int:
        """A paced send time in seconds for a login step (OAuth 1.0a signs it)."""
        return self.send_second(self.pacer.acquire("POST", "/oauth/live_session_token"))

    def send_second(self, slot_ms: int) -> int:
        """The second a request on pacing slot ``slot_ms`` goes out in (OAuth 1.0a's timestamp):
        the slot's, or the present one when this process woke after its slot in a later second.

        IBKR refuses a timestamp earlier than one of the consumer's requests that reached it
        before. Slots only grow across the processes sharing the session, but a process may wake
        late (the pacer keeps a slot up to half its bucket's margin late, 50 ms at 50/s), and the
        processes with the slots after it have sent meanwhile: signed with its slot's second, its
        request would arrive behind theirs with an older timestamp (seen as a 401 with eight
        processes on a loaded two-core host). Signed with the second it goes out in, it is ordered
        as it is sent."""
        return max(slot_ms // 1000, int(self._clock()))
