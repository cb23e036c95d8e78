"""How a socket to ``/v1/api/ws`` authenticates, per auth type.

IBKR's documentation (Streaming WebSocket Data; Web API changelog 2026-03-12):
- OAuth 2.0: the query parameter ``sessionToken`` set to the bearer token.
- Client Portal Gateway and OAuth 1.0a: the cookie ``api=<session>`` on the upgrade request,
  ``session`` being ``/tickle``'s value; or, when the socket answers ``waiting for session``,
  the first message ``{"session": "<session>"}``.
Whether OAuth 1.0a sockets also take ``?oauth_token=`` (as ibind's users report) and whether the
cookie works under OAuth 2.0 is UNCONFIRMED, so the method is a setting: ``stream_auth`` is
``auto`` (the above), ``session_token``, ``cookie`` or ``session_message``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from ibkr_provider.client.errors import IbkrConfigError, IbkrSessionError
from ibkr_provider.client.settings.base import AuthType

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient

WS_PATH = "/v1/api/ws"


class StreamAuth(str, enum.Enum):
    AUTO = "auto"
    SESSION_TOKEN = "session_token"
    COOKIE = "cookie"
    SESSION_MESSAGE = "session_message"

    @classmethod
    def parse(cls, value: object) -> StreamAuth:
        try:
            return cls(str(value or "auto").strip().lower())
        except ValueError:
            known = ", ".join(m.value for m in cls)
            raise IbkrConfigError("stream_auth", f"{value!r} is not one of {known}") from None


@dataclass(frozen=True)
class StreamLogin:
    """Where the socket goes and what it shows: the URL (with ``sessionToken`` for OAuth 2.0),
    the ``api`` cookie, and the ``session`` message sent when the socket waits for one."""

    url: str = field(repr=False)
    cookie: str | None = field(default=None, repr=False)
    session: str | None = field(default=None, repr=False)
    #: What in it is secret (the bearer token, the session value), for the masker.
    secrets: tuple[str, ...] = field(default=(), repr=False)


def ws_url(base_url: str) -> str:
    """``https://api.ibkr.com`` -> ``wss://api.ibkr.com/v1/api/ws`` (``http`` -> ``ws``)."""
    parts = urlsplit(base_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + WS_PATH, "", ""))


def stream_login(client: IbkrClient, mode: StreamAuth = StreamAuth.AUTO) -> StreamLogin:
    """The login for a socket on ``client``'s shared session (opened first if needed; blocking:
    call it in a thread from async code). Every value is a secret already known to the masker."""
    url = ws_url(client.config.base_url)
    if mode is StreamAuth.AUTO:
        mode = StreamAuth.SESSION_TOKEN if client.config.auth_type is AuthType.OAUTH2 else StreamAuth.COOKIE
    if mode is StreamAuth.SESSION_TOKEN:
        client.connect()
        bearer = client.session().bearer
        if not bearer:
            raise IbkrSessionError("the IBKR session has no bearer token for the websocket's sessionToken")
        return StreamLogin(f"{url}?sessionToken={quote(bearer, safe='')}", secrets=(bearer,))
    session = client.tickle().session
    if not session:
        raise IbkrSessionError("IBKR's /tickle gave no session value for the websocket")
    if mode is StreamAuth.COOKIE:
        return StreamLogin(url, cookie=f"api={session}", session=session, secrets=(session,))
    return StreamLogin(url, session=session, secrets=(session,))
