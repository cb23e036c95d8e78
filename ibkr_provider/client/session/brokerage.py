"""IBKR's brokerage-session endpoints, and how their answers read.

``POST /iserver/auth/status`` (is the brokerage session authenticated, competing?),
``POST /iserver/auth/ssodh/init`` (open it; ``compete`` takes it over from another login),
``GET /iserver/accounts`` (the pre-flight IBKR requires "before modifying an order or querying
open orders" and before market data), ``POST /tickle`` (its ``userId`` says whose session it is)
and ``POST /logout``. IBKR allows one brokerage session per username ("A single username can only
have one brokerage session active at a time across all IB platforms", Web API documentation,
Sessions). ``GET /sso/validate`` is not used: IBKR paces it at one call a minute with a 10-15
minute penalty box, and the ``ssodh/init`` answer already proves the SSO session.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ibkr_provider.client.errors import IbkrCompetingSessionError, IbkrError, IbkrErrorCode, IbkrSessionError
from ibkr_provider.client.models.session import BrokerageSessionStatus
from ibkr_provider.client.session.holders import describe
from ibkr_provider.client.session.record import SessionRecord
from ibkr_provider.client.session.sender import SessionSender

STATUS_PATH = "/iserver/auth/status"
INIT_PATH = "/iserver/auth/ssodh/init"

COMPETING_ADVICE = (
    "log out there, or use a second IBKR username for the API (IBKR allows one brokerage session per "
    "username)"
)
#: How a person moves the brokerage session back on purpose (README, troubleshooting).
RECONNECT_ADVICE = "run `ibkr-provider reconnect <connection id>` for the connection that should hold it"


def competing_error(
    endpoint: str, status: BrokerageSessionStatus, *, took_over: bool, taker: SessionRecord | None = None
) -> IbkrCompetingSessionError:
    """The one wording of "another login holds the brokerage session": naming the connection of
    this deployment that holds it when the shared store knows (``taker``), before blaming TWS."""
    verb = "took over" if took_over else "holds"
    if taker is not None:
        return IbkrCompetingSessionError(
            f"{describe(taker.owner)} of this deployment {verb} this IBKR user's brokerage session; "
            f"the provider does not take it back by itself. Use that connection, or {RECONNECT_ADVICE}",
            endpoint=endpoint,
            ibkr_error=status.message or status.fail or None,
            code=IbkrErrorCode.COMPETING,
            hint="which connections of this deployment log in as the same IBKR user",
        )
    return IbkrCompetingSessionError(
        f"another login for this IBKR username (TWS, IBKR Mobile or Client Portal) {verb} the brokerage "
        f"session; the provider does not take it back. {COMPETING_ADVICE}; to take it back, "
        f"{RECONNECT_ADVICE}",
        endpoint=endpoint,
        ibkr_error=status.message or status.fail or None,
        code=IbkrErrorCode.COMPETING,
    )


def displacement_refused(holder: SessionRecord) -> IbkrCompetingSessionError:
    """This connection would displace another connection's brokerage session, and does not."""
    return IbkrCompetingSessionError(
        f"{describe(holder.owner)} of this deployment holds this IBKR user's brokerage session (IBKR "
        "allows one per user); this connection would displace it and does not. Use that connection "
        f"for this work, set displace_other_connections on this one, or {RECONNECT_ADVICE}",
        code=IbkrErrorCode.COMPETING,
        hint="which connections of this deployment log in as the same IBKR user",
        permanent=True,
    )


class BrokerageEndpoints:
    """The endpoints above, on a session record."""

    def __init__(self, sender: SessionSender, secret_sink: Callable[[str], None]) -> None:
        self._sender = sender
        self._sink = secret_sink

    def status(self, record: SessionRecord) -> BrokerageSessionStatus:
        return BrokerageSessionStatus.from_json(self._sender.send_on(record, "POST", STATUS_PATH))

    def init(self, record: SessionRecord, *, compete: bool) -> BrokerageSessionStatus:
        body = self._sender.send_on(
            record, "POST", INIT_PATH, json_body={"publish": True, "compete": compete}
        )
        return BrokerageSessionStatus.from_json(body)

    def accounts(self, record: SessionRecord) -> dict[str, Any]:
        return dict(self._sender.send_on(record, "GET", "/iserver/accounts"))

    def user_of(self, record: SessionRecord) -> str | None:
        """``/tickle``'s ``userId`` (its session id goes to the masker), or None when IBKR does
        not say it or the tickle fails (the caller falls back)."""
        try:
            answer = self._sender.send_on(record, "POST", "/tickle")
        except IbkrError:
            return None
        if not isinstance(answer, Mapping):
            return None
        if answer.get("session"):
            self._sink(str(answer["session"]))
        return str(answer["userId"]) if answer.get("userId") is not None else None

    def logout(self, record: SessionRecord) -> None:
        self._sender.send_on(record, "POST", "/logout")

    def check_granted(self, status: BrokerageSessionStatus, taker: SessionRecord | None) -> None:
        """Raise when ``ssodh/init`` did not grant the brokerage session: competing (naming the
        connection that holds it, when known) or not authenticated."""
        endpoint = f"/v1/api{INIT_PATH}"
        if status.competing or (
            not status.authenticated and "compet" in (status.fail + status.message).lower()
        ):
            error = competing_error(endpoint, status, took_over=False, taker=taker)
            if taker is None:
                error.message += "; or set compete_on_login to take it over when opening a session"
            error.args = (error.message,)
            raise error
        if not status.authenticated:
            reason = status.fail or status.message or "authenticated=false"
            raise IbkrSessionError(
                f"IBKR did not grant a brokerage session: {reason}",
                endpoint=endpoint,
                ibkr_error=status.fail or status.message or None,
                code=IbkrErrorCode.NOT_AUTHENTICATED,
            )
