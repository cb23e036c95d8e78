"""The interface every auth strategy implements: turn its settings into the tokens ``/v1/api``
accepts (:class:`SessionTokens`), and say the headers each request carries. The brokerage-session
steps that follow (``ssodh/init``, the accounts pre-flight) are the same for every strategy and
live in the session manager."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from ibkr_provider.client.http.transport import HttpTransport
from ibkr_provider.client.models.session import AccessToken

#: Receives every secret a strategy creates (Airflow's masker, in the hook).
SecretSink = Callable[[str], None]


@dataclass(frozen=True)
class SessionTokens:
    """What the client authenticates every ``/v1/api`` call with (the OAuth 2.0 SSO bearer, the
    OAuth 1.0a live session token), and when it lapses (epoch seconds).

    Gateway sessions have no tokens: the gateway process holds the session.
    """

    bearer: str | None = field(default=None, repr=False)
    access_token: AccessToken | None = None
    expires_at: float | None = None


#: Waits for a pacing slot and returns the second the request goes out in (epoch seconds; never
#: before the slot, and slots only grow across the processes sharing the session).
Stamp = Callable[[], int]


class AuthStrategy(Protocol):
    """One way of authenticating to the IBKR Web API."""

    def open(self, transport: HttpTransport, stamp: Stamp) -> SessionTokens:
        """Run the steps that precede ``/v1/api`` access and return the tokens."""

    def headers_for(
        self, bearer: str | None, *, method: str, url: str, query: Mapping[str, str], timestamp: int
    ) -> Mapping[str, str]:
        """Headers for one attempt of a ``/v1/api`` request on the session whose token is
        ``bearer``; ``url`` has no query string, ``query`` holds its parameters."""


class TokenKeeper(Protocol):
    """A small shared, encrypted place for one session's long-lived secret (a user's rotated
    OAuth 2.0 refresh token), with a lock every process and host honours: a refresh token is
    good once, so exactly one process may use it at a time and everyone reads its successor."""

    def locked(self) -> AbstractContextManager[object]:
        """Hold the keeper's lock (re-entrant within a thread)."""

    def read(self) -> str | None:
        """The kept text, or None."""

    def write(self, value: str) -> None:
        """Replace the kept text."""
