"""What a connection's Test proves, without taking anyone's brokerage session.

The Test button runs in the API server while DAGs run. It used to open its own brokerage session
with ``compete: true``: a Test (or the end of a Connect IBKR consent) of a second connection of
the same IBKR user took the session of the running DAGs over; and with a session already cached
it reported "Connected" for a corrupted secret or a random key, since the cache was keyed by the
account, not the key. :func:`probe` instead:

1. reuses the shared session when it was opened with these very credentials (the record's
   fingerprint) and asks IBKR whether it is still authenticated (``/iserver/auth/status``): a
   session IBKR no longer considers authenticated is a failed Test, naming who took it; one IBKR
   ended (401) is gone for everyone, and the Test goes on as if there were none;
2. otherwise proves the credentials with the login steps themselves (a fresh client assertion,
   access token and SSO session; a fresh live session token), then sets up a brokerage session
   only when nobody holds one: never with ``compete: true``, never over another connection of
   this deployment (the Test says who holds it), never over a shared session opened with other
   credentials.
"""

from __future__ import annotations

from dataclasses import dataclass

from ibkr_provider.client.config import AuthType
from ibkr_provider.client.errors import IbkrCompetingSessionError, IbkrSessionError
from ibkr_provider.client.models.session import BrokerageSessionStatus
from ibkr_provider.client.session.brokerage import STATUS_PATH, competing_error
from ibkr_provider.client.session.holders import describe
from ibkr_provider.client.session.manager import SessionManager
from ibkr_provider.client.session.record import SessionRecord
from ibkr_provider.client.settings.oauth2_user import OAuth2UserSettings

_PROOF = {
    AuthType.OAUTH2: "a fresh client assertion, access token and SSO session",
    AuthType.OAUTH1A: "a fresh live session token",
    AuthType.GATEWAY: "the gateway's session status",
}


@dataclass(frozen=True)
class Probe:
    """The Test's outcome: ``ok`` when IBKR accepted the credentials (and, for the shared
    session, still considers it authenticated); ``proof`` says how; ``note`` what was left alone;
    ``brokerage`` whether this connection's brokerage session is usable now (accounts can be read)."""

    ok: bool
    proof: str
    note: str = ""
    brokerage: bool = False


def _status_of(sessions: SessionManager, shared: SessionRecord) -> BrokerageSessionStatus | None:
    """IBKR's status of the shared session; None when IBKR ended it (401: expired, logged out, its
    OAuth 2.0 grant revoked): nobody holds it any more, so the Test proves the credentials afresh."""
    try:
        return sessions.brokerage.status(shared)
    except IbkrSessionError as exc:
        if exc.status != 401:
            raise
        return None


def probe(sessions: SessionManager) -> Probe:
    """See the module docstring. Runs under the session's lock (single flight with tasks)."""
    with sessions.store.lock(sessions.key):
        shared = sessions.store.load(sessions.key)
        status = _status_of(sessions, shared) if shared is not None and sessions.usable(shared) else None
        if shared is not None and status is not None:
            proof = (
                "the shared session, opened with this connection's credentials "
                f"(fingerprint {sessions.fingerprint})"
            )
            if status.healthy:
                return Probe(True, proof, brokerage=True)
            taker = sessions.holders.holder(shared.user, besides=sessions.key)
            if status.competing:
                reason = str(competing_error(f"/v1/api{STATUS_PATH}", status, took_over=True, taker=taker))
            else:
                reason = f"IBKR says: {status.fail or status.message or 'authenticated=false'}"
            return Probe(False, proof, f"IBKR no longer considers the shared session authenticated: {reason}")
        record = sessions.new_record(shared)
        how = _PROOF[sessions.config.auth_type]
        if isinstance(sessions.config.auth, OAuth2UserSettings):
            how = "the user's grant refreshed (OAuth 2.0 authorization code) and a fresh SSO session"
        proof = f"{how} ({sessions.config.auth_type.value})"
        holder = sessions.holders.holder(record.user, besides=sessions.key)
        if holder is not None:
            return Probe(
                True,
                proof,
                f"the brokerage session of this IBKR user is held by {describe(holder.owner)}; this Test did "
                "not take it over (tasks of this connection would not either: set displace_other_connections "
                "or run `ibkr-provider reconnect` to move it here)",
            )
        if shared is not None and shared.fingerprint != sessions.fingerprint and sessions.alive(shared):
            return Probe(
                True,
                proof,
                "the shared session of this connection was opened with other credentials (another host's "
                "key, or the one before a change); this Test left it alone, and the next task opens one "
                "with these",
            )
        try:
            sessions.claim_brokerage(record, compete=False, displace=False)
        except IbkrCompetingSessionError as exc:
            return Probe(True, proof, f"not connected to the brokerage session: {exc}")
        sessions.store.save(sessions.key, record)
        return Probe(True, proof, brokerage=True)
