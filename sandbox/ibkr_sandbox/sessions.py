"""What the sandbox keeps per access token and per session: the records ``SandboxState`` holds
under its lock."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


@dataclass
class AccessTokenRecord:
    client_id: str
    expires_at: float
    #: The user a token from the authorization-code flow acts for (None: the app's own token).
    username: str | None = None
    #: The consent (token family) it descends from; revoking the family ends it.
    family: str | None = None


@dataclass
class SsoSessionRecord:
    """One SSO (read-only) session; ``brokerage`` is the /iserver tier on top of it."""

    session_id: str
    client_id: str
    credential: str
    ip: str
    created_at: float
    last_active: float
    expires_at: float = float("inf")
    brokerage: bool = False
    competing: bool = False
    iserver_accounts_queried: bool = False
    portfolio_accounts_queried: bool = False
    #: conids this session has requested market data for (the first snapshot is a pre-flight)
    subscribed: set[int] = field(default_factory=set)
    #: The id IBKR shows for the session (tickle's ``session``, ``sessionId``): not its token.
    public_id: str = field(default_factory=lambda: secrets.token_hex(16))
    #: The user grant (token family) whose access token opened it: revoking the grant ends it.
    family: str | None = None
