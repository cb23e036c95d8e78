"""The two consent protocols of Connect IBKR, apart from the pages: how a consent begins (an
OAuth 1.0a request token; OAuth 2.0 endpoints and a PKCE pair), and how it completes (the token
exchange, the user's connection saved and tested). Blocking: the routes run these in threads.

Everything Airflow-internal is imported when a request comes, not when the plugin loads.
"""

from __future__ import annotations

import dataclasses
import html
import json
import urllib.parse
from typing import Any

from fastapi.responses import HTMLResponse

from ibkr_provider.plugins.connections import may_replace
from ibkr_provider.plugins.consent import PendingConsent, user_connection_fields
from ibkr_provider.plugins.pages import Paths, Refused, mask, page


def begin_oauth1a(
    profile: Any, pending: PendingConsent, callback: str, state: str
) -> tuple[PendingConsent, str]:
    """OAuth 1.0a: a request token (the state rides in the callback's query); the authorize URL."""
    from ibkr_provider.client.auth.oauth1a.consent import authorize_url, request_token

    callback += ("&" if "?" in callback else "?") + urllib.parse.urlencode({"state": state})
    with consent_transport(profile) as http:
        token = request_token(profile, callback, http)
    mask(token)
    return dataclasses.replace(pending, request_token=token), authorize_url(profile, token)


def begin_oauth2(
    profile: Any, pending: PendingConsent, callback: str, state: str
) -> tuple[PendingConsent, str]:
    """OAuth 2.0: the endpoints (discovered or configured), a PKCE pair kept server-side with the
    exact redirect URI; the authorize URL (``state`` is its own parameter)."""
    from ibkr_provider.client.auth.oauth2_code import Pkce, authorize_redirect, endpoints_of

    with consent_transport(profile) as http:
        server = endpoints_of(profile, http)
    pkce = Pkce.new()
    kept = dataclasses.replace(
        pending,
        protocol="oauth2",
        code_verifier=pkce.verifier,
        redirect_uri=callback,
        token_url=server.token_url,
        revocation_url=server.revocation_url or "",
    )
    authorize = authorize_redirect(
        server,
        client_id=profile.client_id,
        redirect_uri=callback,
        scope=profile.scope,
        state=state,
        pkce=pkce,
    )
    return kept, authorize


def declined(error: str, paths: Paths) -> HTMLResponse:
    """The authorization server sent the user back without a code."""
    text = (
        "You declined at IBKR, so no connection was created or changed."
        if error in ("", "access_denied")
        else f"IBKR did not grant access ({error}), so no connection was created or changed."
    )
    return page("Connect IBKR", f'<p class="bad" role="alert">{html.escape(text)}</p>', home=paths.home)


def consent_transport(profile: Any) -> Any:
    """The provider's transport with the consumer profile's TLS and timeout settings."""
    from ibkr_provider.client.http.retries import RetryPolicy
    from ibkr_provider.client.http.transport import HttpTransport

    # A person waits on the page: a few quick retries, not the tasks' minute.
    policy = RetryPolicy(max_attempts=3, max_seconds=10.0)
    return HttpTransport(verify=profile.verify, timeout=profile.timeout, retry_policy=policy)


def complete_consent(
    conn: Any, profile: Any, pending: PendingConsent, verifier: str, user: Any, home: str
) -> HTMLResponse:
    """OAuth 1.0a: exchange the verifier, save the user's connection, test it, show its accounts."""
    from ibkr_provider.client.auth.oauth1a.consent import access_token
    from ibkr_provider.client.errors import IbkrError

    with consent_transport(profile) as http:
        try:
            grant = access_token(profile, pending.request_token, verifier, http)
        except IbkrError as exc:
            raise Refused(
                502, f"IBKR refused the token exchange: {exc}. Start again with Connect IBKR."
            ) from None
    mask(grant.access_token, grant.access_token_secret)
    own = {"auth_type": "oauth1a", "access_token": grant.access_token}
    kind = "IBKR marks this login as paper" if grant.is_paper else "IBKR's is_paper: false"
    return save_and_test(conn, pending, user, home, own, grant.access_token_secret, kind)


def complete_oauth2_consent(
    conn: Any, profile: Any, pending: PendingConsent, code: str, user: Any, home: str
) -> HTMLResponse:
    """OAuth 2.0: exchange the code (with the PKCE verifier and the same redirect URI), save the
    user's connection (its refresh token and token endpoint; the app's key stays in the profile),
    test it (the first refresh and SSO session) and show its accounts."""
    from ibkr_provider.client.auth.oauth2_code import AuthorizationServer, Pkce, token_endpoint_of
    from ibkr_provider.client.errors import IbkrError

    server = AuthorizationServer(
        authorize_url="", token_url=pending.token_url, revocation_url=pending.revocation_url or None
    )
    with consent_transport(profile) as http:
        try:
            tokens = token_endpoint_of(profile, server, secret_sink=mask).exchange_code(
                code, redirect_uri=pending.redirect_uri, pkce=Pkce(pending.code_verifier), http=http
            )
        except IbkrError as exc:
            raise Refused(
                502, f"IBKR refused the code exchange: {exc}. Start again with Connect IBKR."
            ) from None
    own: dict[str, Any] = {
        "auth_type": "oauth2",
        "refresh_token": tokens.refresh_token,
        "token_url": pending.token_url,
    }
    if pending.revocation_url:
        own["revocation_url"] = pending.revocation_url
    if tokens.username:
        own["credential"] = tokens.username
    return save_and_test(conn, pending, user, home, own, None, f"OAuth 2.0 scope: {tokens.scope or '-'}")


def save_and_test(
    conn: Any,
    pending: PendingConsent,
    user: Any,
    home: str,
    own: dict[str, Any],
    password: str | None,
    kind: str,
) -> HTMLResponse:
    """Save the user's connection (the profile's settings and ``own`` grant), test it, and the
    result page."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    extra = user_connection_fields(conn.conn_id, conn.extra_dejson, own)
    extra["connected_by"] = str(user.get_name())
    extra["connected_by_id"] = str(user.get_id())
    may_replace(pending.target_conn_id, user)  # again: it may have been made meanwhile
    with create_session() as session:
        target = session.scalar(select(Connection).where(Connection.conn_id == pending.target_conn_id))
        if target is None:
            target = Connection(conn_id=pending.target_conn_id, conn_type="ibkr")
            session.add(target)
        target.conn_type = "ibkr"
        target.host, target.port, target.login = conn.host, conn.port, conn.login
        if password is not None:
            target.password = password
        else:  # Airflow's password setter ignores None: clear the column
            target._password = None
        target.set_extra(json.dumps(extra))
        target.description = f"Connected through Connect IBKR by {user.get_name()}"
        exported = target.as_json()
    ok, message = test_saved(exported, pending.target_conn_id)
    outcome = "ok" if ok else "bad"
    body = (
        f"<p>Saved the connection <b>{html.escape(pending.target_conn_id)}</b> ({html.escape(kind)}).</p>"
        f'<p class="{outcome}" role="status">{"Test succeeded" if ok else "Test failed"}: '
        f"{html.escape(message)}</p>"
    )
    return page("IBKR connected" if ok else "IBKR connection saved, but its test failed", body, home=home)


def test_saved(exported: str, conn_id: str) -> tuple[bool, str]:
    """The hook's own test (what the Test button runs) of a connection as Airflow exports it
    (``Connection.as_json``), built from that text: no environment variable, no lookup; the
    shared session names ``conn_id`` as its opener."""
    from airflow.models.connection import Connection

    from ibkr_provider.hooks.ibkr import IbkrHook

    conn = Connection.from_json(exported, conn_id=conn_id)
    return IbkrHook.of_connection(conn, session_owner=conn_id).test_connection()
