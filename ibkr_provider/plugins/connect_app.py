"""The "Connect IBKR" pages, mounted by the provider's plugin under ``/ibkr`` on the API server.

``GET /ibkr/connect`` lists the IBKR connections and starts a consent from a consumer profile
(see :mod:`ibkr_provider.plugins.consent`). Two protocols do the rest: IBKR's three-legged OAuth
1.0a (:mod:`ibkr_provider.client.auth.oauth1a.consent`, a request token and a verifier) or OAuth
2.0 authorization code with PKCE (:mod:`ibkr_provider.client.auth.oauth2_code`, for apps IBKR
approved for it): the browser goes to the authorize page and comes back to
``/ibkr/connect/callback``, which exchanges the verifier or code, saves the user's connection,
tests it and shows the accounts. ``/ibkr/connect/disconnect`` removes a user's token after a
confirmation (and revokes an OAuth 2.0 grant where the server offers revocation).

Security: every page needs an Airflow login (the UI's ``_token`` cookie, read by Airflow's own
``get_user``) and Airflow's auth manager must allow the user to edit connections; forms carry a
CSRF token (HMAC of the user id with ``[api] secret_key``); the consent state is single-use,
bound to the user and to this browser (an HttpOnly cookie), and expires in 10 minutes. Request
tokens, verifiers, access tokens and secrets are registered with Airflow's maskers (the API
server's access log included, which prints query strings) and never put on a page.

Everything Airflow-internal is imported when a request comes, not when the plugin loads.
"""

from __future__ import annotations

import asyncio
import html
import time
import urllib.parse
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ibkr_provider.plugins.connection_states import auth_label, connection_states
from ibkr_provider.plugins.connections import (
    consumer_profile,
    end_session,
    forget_token,
    ibkr_connections,
    made_by_connect,
    may_replace,
    shown_to,
    state_store,
)
from ibkr_provider.plugins.consent import (
    STATE_LIFETIME_SECONDS,
    ConsentRefused,
    PendingConsent,
    new_state,
    same_secret,
    seal,
    state_key,
    unseal,
)
from ibkr_provider.plugins.consent_flows import (
    begin_oauth1a,
    begin_oauth2,
    complete_consent,
    complete_oauth2_consent,
    declined,
)
from ibkr_provider.plugins.pages import Paths, Refused, checked_form, csrf_token, current_user, mask, page
from ibkr_provider.plugins.portfolio_page import add_portfolio_routes

STATE_COOKIE = "ibkr_connect_state"


WHO_IT_IS_FOR = (
    "<p>Connect IBKR is for apps IBKR registered as <b>third-party consumers</b> (OAuth 1.0a, "
    "three-legged) or approved for <b>OAuth 2.0 authorization code</b>: each person logs in at IBKR "
    "and approves the app, and the connection is saved for them. An individual account does not need "
    "it: generate a consumer key and tokens on IBKR's self-service OAuth page and add an "
    "<b>Interactive Brokers (OAuth 1.0a self-service)</b> connection.</p>"
)


async def _list_page(paths: Paths, user: Any, message: str = "") -> HTMLResponse:
    conns = [c for c in await asyncio.to_thread(ibkr_connections) if shown_to(c, user)]
    states = await connection_states(conns)
    rows, profiles = [], []
    for conn in conns:
        extra = conn.extra_dejson
        state = states[conn.conn_id]
        auth = auth_label(conn)
        action = ""
        if state.kind == "profile":
            profiles.append(conn.conn_id)
        if extra.get("connected_by"):
            query = urllib.parse.urlencode({"conn_id": conn.conn_id})
            action = f'<a href="{html.escape(paths.disconnect)}?{html.escape(query)}">Disconnect</a>'
        who = (
            f" (connected by {html.escape(str(extra['connected_by']))})" if extra.get("connected_by") else ""
        )
        rows.append(
            f"<tr><td>{html.escape(conn.conn_id)}</td><td>{html.escape(auth)}</td>"
            f'<td class="{state.css}">{html.escape(state.text)}{who}</td><td>{action}</td></tr>'
        )
    options = "".join(f'<option value="{html.escape(p)}">{html.escape(p)}</option>' for p in profiles)
    start = (
        f"""<form method="post" action="{html.escape(paths.start)}" target="_top">
<input type="hidden" name="csrf" value="{csrf_token(user)}">
<label>Consumer profile <select name="profile">{options}</select></label>
<label>Save the connection as
<input name="conn_id" value="ibkr_connected" pattern="[A-Za-z0-9_.-]+" required></label>
<button type="submit">Connect IBKR</button></form>"""
        if profiles
        else "<p>Add a consumer profile first: an <code>ibkr</code> connection with auth type "
        "<code>oauth1a</code>, your app's consumer key as login, its signature and encryption keys and DH "
        "parameters, and no access token; or with auth type <code>oauth2</code>, your app's client id, key "
        "id and private key and the <code>issuer</code> (see the README, Connect IBKR).</p>"
    )
    note = f"<p>{html.escape(message)}</p>" if message else ""
    table = (
        "<table><tr><th>Connection</th><th>Auth type</th><th>State</th><th></th></tr>"
        + "".join(rows)
        + "</table>"
    )
    return page("Connect IBKR", WHO_IT_IS_FOR + note + table + start, home=None)


def create_connect_app() -> FastAPI:
    """The FastAPI app the plugin mounts under ``/ibkr``."""
    app = FastAPI(title="IBKR connect", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> HTMLResponse:
        alert = f'<p class="bad" role="alert">{html.escape(exc.text)}</p>'
        return page("Connect IBKR", alert, home=Paths.of(request).home, status=exc.status)

    @app.get("/connect", name="ibkr_connect")
    async def connect_page(request: Request) -> HTMLResponse:
        user = await current_user(request, "GET")
        return await _list_page(Paths.of(request), user)

    @app.post("/connect/start", name="ibkr_connect_start")
    async def start(request: Request) -> Response:
        from ibkr_provider.client.errors import IbkrError
        from ibkr_provider.client.settings.oauth2_user import OAuth2AppProfile

        user = await current_user(request, "PUT")
        form = await checked_form(request, user)
        target = form.get("conn_id", "").strip()
        if not target or not all(c.isalnum() or c in "_.-" for c in target):
            raise Refused(400, "Name the connection with letters, digits, '_', '.' or '-'.")
        await asyncio.to_thread(may_replace, target, user)
        conn, profile = await asyncio.to_thread(consumer_profile, form.get("profile", ""))
        state = new_state()
        callback = conn.extra_dejson.get("callback_url") or str(request.url_for("ibkr_connect_callback"))
        pending = PendingConsent(
            user_id=str(user.get_id()),
            profile_conn_id=conn.conn_id,
            target_conn_id=target,
            request_token="",
            expires_at=time.time() + STATE_LIFETIME_SECONDS,
        )
        begin = begin_oauth2 if isinstance(profile, OAuth2AppProfile) else begin_oauth1a
        try:  # a worker thread: while IBKR answers, the API server serves everyone else
            pending, authorize = await asyncio.to_thread(begin, profile, pending, callback, state)
        except IbkrError as exc:
            check = exc.hint or "the consumer profile's host and that IBKR is reachable"
            raise Refused(502, f"IBKR refused to start the consent: {exc}. Check {check}.") from None
        await asyncio.to_thread(state_store().stash, state_key(state), seal(pending), STATE_LIFETIME_SECONDS)
        response = RedirectResponse(authorize, status_code=303)
        response.set_cookie(
            STATE_COOKIE,
            state,
            max_age=int(STATE_LIFETIME_SECONDS),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path=Paths.of(request).callback,
        )
        return response

    @app.get("/connect/callback", name="ibkr_connect_callback")
    async def callback(request: Request) -> Response:
        query = request.query_params
        token, verifier = query.get("oauth_token", ""), query.get("oauth_verifier", "")
        code = query.get("code", "")
        # The login and the pending consent are checked before anything is masked: each masked
        # value adds a pattern to one regular expression Airflow rebuilds, so masking what
        # anyone sends let unauthenticated requests slow down and grow the API server.
        user = await current_user(request, "PUT")
        state = query.get("state") or request.cookies.get(STATE_COOKIE, "")
        cookie = request.cookies.get(STATE_COOKIE)
        if not state or cookie is None or not same_secret(cookie, state):
            raise Refused(400, "This consent was not started in this browser. Start again with Connect IBKR.")
        try:
            taken = await asyncio.to_thread(state_store().take, state_key(state))
            pending = unseal(taken, str(user.get_id()), token)
        except ConsentRefused as exc:
            raise Refused(400, str(exc)) from None
        mask(*(value for value in (token, verifier, code) if value))  # this user's pending consent
        paths = Paths.of(request)
        if pending.protocol == "oauth2":
            if query.get("error") or not code:
                return _finished(declined(query.get("error", ""), paths), paths)
            conn, profile = await asyncio.to_thread(consumer_profile, pending.profile_conn_id)
            done = await asyncio.to_thread(
                complete_oauth2_consent, conn, profile, pending, code, user, paths.home
            )
            return _finished(done, paths)
        if query.get("denied") or not verifier:
            return _finished(
                page(
                    "Connect IBKR",
                    '<p class="bad" role="alert">You declined at IBKR, so no connection was created '
                    "or changed.</p>",
                    home=paths.home,
                ),
                paths,
            )
        conn, profile = await asyncio.to_thread(consumer_profile, pending.profile_conn_id)
        # the token exchange, the saved connection and its test block: a worker thread
        done = await asyncio.to_thread(complete_consent, conn, profile, pending, verifier, user, paths.home)
        return _finished(done, paths)

    @app.get("/connect/disconnect", name="ibkr_disconnect")
    async def disconnect_page(request: Request, conn_id: str = "") -> HTMLResponse:
        user = await current_user(request, "PUT")
        paths = Paths.of(request)
        return page(
            "Disconnect IBKR",
            f"""<p>Remove the IBKR access token of <b>{html.escape(conn_id)}</b>?
Its DAGs stop working until you connect again. The consumer's keys stay.</p>
<form method="post" action="{html.escape(paths.disconnect)}">
<input type="hidden" name="csrf" value="{csrf_token(user)}">
<input type="hidden" name="conn_id" value="{html.escape(conn_id)}">
<button type="submit">Disconnect</button></form>""",
            home=paths.home,
        )

    @app.post("/connect/disconnect")
    async def disconnect(request: Request) -> HTMLResponse:
        user = await current_user(request, "PUT")
        form = await checked_form(request, user)
        conn_id = form.get("conn_id", "")
        if not await asyncio.to_thread(made_by_connect, conn_id):
            raise Refused(404, f"{conn_id!r} is not a connection Connect IBKR made.")
        ended = await asyncio.to_thread(end_session, conn_id)
        if not await asyncio.to_thread(forget_token, conn_id):
            raise Refused(404, f"{conn_id!r} is gone.")
        return await _list_page(
            Paths.of(request), user, f"Disconnected {conn_id}: its access token is removed; {ended}."
        )

    add_portfolio_routes(app)
    return app


def _finished(response: Response, paths: Paths) -> Response:
    """The consent is over: its state cookie goes (with the path it was set for, or the browser
    keeps it)."""
    response.delete_cookie(STATE_COOKIE, path=paths.callback)
    return response
