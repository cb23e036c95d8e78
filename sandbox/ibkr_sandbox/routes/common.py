"""What every route of the sandbox shares: IBKR-style errors and the checks IBKR makes on a
request before it serves it (a live session, a brokerage session, the pre-flight calls).

Error bodies copy what IBKR is documented or reported to send (ibind and ibeam issue threads):
``401 {"error":"not authenticated","statusCode":401}`` on a bad bearer and
``400 {"error":"Bad Request: no bridge","statusCode":400}`` for ``/iserver`` without a
brokerage session.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ibkr_sandbox.consent import consent_page
from ibkr_sandbox.oauth1 import OAuth1Rejected
from ibkr_sandbox.seed import SeedAccount
from ibkr_sandbox.sessions import SsoSessionRecord
from ibkr_sandbox.state import SandboxState

SERVER_INFO = {"serverName": "SandboxGW1", "serverVersion": "Build 10.30.1s (airflow-provider-ibkr sandbox)"}


class SandboxHttpError(Exception):
    """An IBKR-style error answer."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def ibkr_error(status: int, text: str) -> SandboxHttpError:
    return SandboxHttpError(status, {"error": text, "statusCode": status})


def oauth_error(status: int, error: str, description: str) -> SandboxHttpError:
    return SandboxHttpError(status, {"error": error, "error_description": description, "status": status})


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def signed_url(request: Request) -> str:
    """The URL an OAuth 1.0a signature covers: scheme, host and path, no query."""
    return f"{request.url.scheme}://{request.url.netloc}{request.url.path}"


class Gate:
    """IBKR's admission checks over one sandbox's state, used by the routers."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.settings = state.settings

    def rejected(self, exc: OAuth1Rejected) -> SandboxHttpError:
        """The answer to a refused OAuth 1.0a request (a bad signature is counted)."""
        if exc.bad_signature:
            self.state.counters.add("rejected_signatures")
        return SandboxHttpError(exc.status, exc.body)

    def oauth1_token(self, request: Request) -> str:
        """OAuth 1.0a: the live session token a request is signed with (checked)."""
        verifier = self.state.oauth1
        if verifier is None:
            raise ibkr_error(401, "not authenticated")
        header = request.headers.get("authorization", "")
        with self.state.lock:
            try:
                _, lst = verifier.request(
                    request.method,
                    signed_url(request),
                    dict(request.query_params),
                    header,
                    request.scope.get("sandbox.arrival"),
                )
            except OAuth1Rejected as exc:
                raise self.rejected(exc) from None
        return lst

    def session(self, request: Request) -> SsoSessionRecord:
        if self.settings.gateway:
            key = None
        elif self.settings.oauth1a or request.headers.get("authorization", "").startswith("OAuth "):
            # oauth1a mode takes only signed requests; oauth2 mode also takes OAuth 1.0a ones (the
            # connections Connect IBKR makes in `make up`), told apart by the header's scheme
            key = self.oauth1_token(request)
        else:
            key = bearer(request)
        record = self.state.live_session(key)
        if record is None:
            raise ibkr_error(401, "not authenticated")
        return record

    def brokerage(self, request: Request) -> SsoSessionRecord:
        record = self.session(request)
        if not record.brokerage:
            raise ibkr_error(400, "Bad Request: no bridge")
        return record

    def trading(self, request: Request, account_id: str | None = None) -> SsoSessionRecord:
        """IBKR: /iserver/accounts "must be called before modifying an order or querying open orders"."""
        record = self.brokerage(request)
        if not record.iserver_accounts_queried:
            raise ibkr_error(500, "Please query /accounts first")
        if account_id is not None and account_id not in self.state.credentials.get(record.credential, []):
            raise ibkr_error(400, f"Bad Request: accountId is not valid: {account_id}")
        return record

    def account_for(self, record: SsoSessionRecord, account_id: str) -> SeedAccount:
        """IBKR's portfolio rule: /portfolio/accounts must be read before any account's data."""
        if not record.portfolio_accounts_queried:
            raise ibkr_error(500, "Please query /portfolio/accounts first")
        if account_id not in self.state.credentials.get(record.credential, []):
            raise ibkr_error(400, f"Bad Request: accountId is not valid: {account_id}")
        return self.state.book.accounts[account_id]


def auth_status(record: SsoSessionRecord) -> dict[str, Any]:
    return {
        "authenticated": record.brokerage,
        "competing": record.competing,
        "connected": True,
        "message": "",
        "fail": "",
        "MAC": "02:00:00:5A:4D:42",
        "hardware_info": "5a4d42|02:00:00:5A:4D:42",
        "serverInfo": SERVER_INFO,
    }


async def posted_form(request: Request) -> dict[str, str]:
    """A login page's posted form (``application/x-www-form-urlencoded``), first value of each
    field."""
    return {k: v[0] for k, v in urllib.parse.parse_qs((await request.body()).decode()).items()}


class ConsentDecider(Protocol):
    """A pending consent (OAuth 1.0a request token, OAuth 2.0 authorization request)."""

    def is_pending(self, key: str, /) -> bool: ...

    def decide(self, key: str, username: str, password: str, accept: bool, /) -> str: ...


async def consent_decision(
    request: Request, state: SandboxState, decider: ConsentDecider, *, field: str, counter: str
) -> Response:
    """The consent page's Allow or Deny: the login is checked and the user is sent on to the
    consumer's callback (counted as ``<counter>_accepted`` or ``_denied``); a wrong login shows
    the page again while the request is still pending."""
    form = await posted_form(request)
    key = form.get(field, "")
    accept = form.get("decision") == "accept"
    with state.lock:
        try:
            target = decider.decide(key, form.get("username", ""), form.get("password", ""), accept)
        except ValueError as exc:
            pending = key if decider.is_pending(key) else None
            return HTMLResponse(consent_page(pending, str(exc), field=field), 400)
        state.counters.add(f"{counter}_accepted" if accept else f"{counter}_denied")
    return RedirectResponse(target, status_code=303)
