"""The "Connect IBKR" pages, mounted by the provider's plugin under ``/ibkr`` on the API server.

``GET /ibkr/connect`` lists the IBKR connections and starts a consent from a consumer profile
(see :mod:`ibkr_provider.plugins.consent`); IBKR's three-legged OAuth 1.0a does the rest
(:mod:`ibkr_provider.client.auth.oauth1a.consent`): the browser goes to IBKR's authorize page and comes
back to ``/ibkr/connect/callback``, which exchanges the verifier, saves the user's connection,
tests it and shows the accounts. ``/ibkr/connect/disconnect`` removes a user's token after a
confirmation.

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
import hashlib
import hmac
import html
import json
import os
import secrets
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ibkr_provider.plugins.consent import (
    STATE_LIFETIME_SECONDS,
    ConsentRefused,
    PendingConsent,
    new_state,
    same_secret,
    seal,
    state_key,
    unseal,
    user_connection_fields,
)

STATE_COOKIE = "ibkr_connect_state"
#: Every page: never cached, never sends a referrer (IBKR's redirect carries tokens), never
#: framed (a framed page's buttons could be clicked through an overlay: clickjacking).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}


class _Refused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _mask(*values: str) -> None:
    """Register with the task-side masker and the API server's own (its access log uses it)."""
    from airflow._shared.secrets_masker import secrets_masker as server_masker
    from airflow.sdk.log import mask_secret

    for value in values:
        if value:
            server_masker.mask_secret(value)
            mask_secret(value)


@dataclass(frozen=True)
class _Paths:
    """Where the pages are, read from the request (the plugin's mount and any prefix the API
    server runs under). Links and form targets are absolute: the pages are served at several
    depths (``/ibkr/connect``, ``/ibkr/connect/callback``, ``/ibkr/connect/disconnect``), where
    one relative link cannot be right for all of them."""

    home: str
    start: str
    disconnect: str
    callback: str  # also the path of the consent's state cookie, set at the start, deleted at the end

    @classmethod
    def of(cls, request: Request) -> _Paths:
        names = ("ibkr_connect", "ibkr_connect_start", "ibkr_disconnect", "ibkr_connect_callback")
        return cls(*(request.url_for(name).path for name in names))


def _page(title: str, body: str, home: str | None, status: int = 200) -> HTMLResponse:
    """A page of its own (not Airflow's React UI), with links back to Connect IBKR (``home``;
    None on the Connect IBKR page itself) and to Airflow's connections."""
    back = f'<a href="{html.escape(home)}">Connect IBKR</a> &middot; ' if home else ""
    return HTMLResponse(
        f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2rem;max-width:60rem}}table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:.4rem .8rem;text-align:left}}.ok{{color:#060}}.bad{{color:#a00}}
label{{display:block;margin:.5rem 0}}</style></head>
<body><h1>{html.escape(title)}</h1>{body}
<p>{back}<a href="/connections">Airflow connections</a></p></body></html>""",
        status_code=status,
        headers=PAGE_HEADERS,
    )


async def _user(request: Request, method: Literal["GET", "PUT"]) -> Any:
    """The logged-in Airflow user, allowed by the auth manager to ``method`` connections."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails
    from airflow.api_fastapi.core_api.security import resolve_user_from_token
    from fastapi import HTTPException

    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else request.cookies.get("_token")
    try:
        user = await resolve_user_from_token(token)
    except HTTPException:
        raise _Refused(401, "Log in to Airflow first, then open this page again.") from None
    if not get_auth_manager().is_authorized_connection(method=method, user=user, details=ConnectionDetails()):
        raise _Refused(403, "Your Airflow role may not edit connections; ask an admin.")
    return user


def _csrf(user: Any) -> str:
    from airflow.api_fastapi.auth.tokens import get_signing_key

    key = get_signing_key("api", "secret_key").encode()
    return hmac.new(key, f"ibkr-connect:{user.get_id()}".encode(), hashlib.sha256).hexdigest()


async def _form(request: Request, user: Any) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    data = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
    if not same_secret(data.get("csrf", ""), _csrf(user)):
        raise _Refused(403, "This form expired or did not come from this page. Open Connect IBKR again.")
    return data


def _ibkr_connections() -> list[Any]:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        found = session.scalars(select(Connection).where(Connection.conn_type == "ibkr")).all()
        for conn in found:
            session.expunge(conn)
    return sorted(found, key=lambda c: c.conn_id)


def _profile(conn_id: str) -> tuple[Any, Any]:
    """The consumer profile connection and the client-side view of it."""
    from airflow.models.connection import Connection

    from ibkr_provider.client import fields
    from ibkr_provider.client.auth.oauth1a.consent import DEFAULT_AUTHORIZE_URL, ConsumerProfile
    from ibkr_provider.client.errors import IbkrConfigError
    from ibkr_provider.client.settings.oauth1a import consumer_realm, required_rsa_key
    from ibkr_provider.hooks.ibkr import connection_values

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except Exception:
        raise _Refused(400, f"There is no connection {conn_id!r} to use as consumer profile.") from None
    extra = conn.extra_dejson
    if conn.conn_type != "ibkr" or extra.get("auth_type") != "oauth1a" or not conn.login:
        raise _Refused(
            400, f"{conn_id!r} is not a consumer profile (an ibkr oauth1a connection with a consumer key)."
        )
    values = connection_values(conn.host, conn.login, conn.password, extra, port=conn.port)
    try:
        profile = ConsumerProfile(
            base_url=_base_url(conn.host, conn.port),
            consumer_key=conn.login,
            signature_key=required_rsa_key(
                values, "signature_private_key", "the consumer's private signature key"
            ),
            realm=consumer_realm(values, conn.login),
            authorize_url=extra.get("authorize_url") or DEFAULT_AUTHORIZE_URL,
            verify=fields.verify(extra.get("verify"), error=IbkrConfigError),
        )
    except IbkrConfigError as exc:
        raise _Refused(400, f"The consumer profile {conn_id!r} is incomplete: {exc}") from None
    return conn, profile


def _base_url(host: str | None, port: int | None) -> str:
    from ibkr_provider.client.errors import IbkrConfigError
    from ibkr_provider.client.fields import url_with_port
    from ibkr_provider.client.hosts import DEFAULT_BASE_URL

    return url_with_port((host or DEFAULT_BASE_URL).rstrip("/"), port, error=IbkrConfigError)


def _state_store() -> Any:
    """Where pending consents wait: ``[ibkr] connect_state_cache`` (``file``, the default, for one
    API server host; ``redis://...`` when several API servers share the callback)."""
    from airflow.sdk import conf

    from ibkr_provider.client.session.stores.factory import build_session_store
    from ibkr_provider.hooks.ibkr import airflow_cipher, default_session_cache_dir

    spec = conf.get("ibkr", "connect_state_cache", fallback="") or None
    return build_session_store(spec, default_dir=default_session_cache_dir(), cipher=airflow_cipher())


def _list_page(paths: _Paths, user: Any, message: str = "") -> HTMLResponse:
    rows, profiles = [], []
    for conn in _ibkr_connections():
        extra = conn.extra_dejson
        auth = extra.get("auth_type", "oauth2")
        action = ""
        if auth == "oauth1a" and not extra.get("access_token"):
            profiles.append(conn.conn_id)
            state = "consumer profile"
        elif extra.get("connected_by"):
            state = f"connected by {extra['connected_by']}"
            query = urllib.parse.urlencode({"conn_id": conn.conn_id})
            action = f'<a href="{html.escape(paths.disconnect)}?{html.escape(query)}">Disconnect</a>'
        else:
            state = "configured"
        rows.append(
            f"<tr><td>{html.escape(conn.conn_id)}</td><td>{html.escape(auth)}</td>"
            f"<td>{html.escape(state)}</td><td>{action}</td></tr>"
        )
    options = "".join(f'<option value="{html.escape(p)}">{html.escape(p)}</option>' for p in profiles)
    start = (
        f"""<form method="post" action="{html.escape(paths.start)}">
<input type="hidden" name="csrf" value="{_csrf(user)}">
<label>Consumer profile <select name="profile">{options}</select></label>
<label>Save the connection as
<input name="conn_id" value="ibkr_connected" pattern="[A-Za-z0-9_.-]+" required></label>
<button type="submit">Connect IBKR</button></form>"""
        if profiles
        else "<p>Add a consumer profile first: an <code>ibkr</code> connection with auth type "
        "<code>oauth1a</code>, your app's consumer key as login, its signature and encryption keys and DH "
        "parameters, and no access token (see the README, Connect IBKR).</p>"
    )
    note = f"<p>{html.escape(message)}</p>" if message else ""
    table = (
        "<table><tr><th>Connection</th><th>Auth type</th><th>State</th><th></th></tr>"
        + "".join(rows)
        + "</table>"
    )
    return _page("Connect IBKR", note + table + start, home=None)


def create_connect_app() -> FastAPI:
    """The FastAPI app the plugin mounts under ``/ibkr``."""
    app = FastAPI(title="IBKR connect", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused) -> HTMLResponse:
        alert = f'<p class="bad" role="alert">{html.escape(exc.text)}</p>'
        return _page("Connect IBKR", alert, home=_Paths.of(request).home, status=exc.status)

    @app.get("/connect", name="ibkr_connect")
    async def connect_page(request: Request) -> HTMLResponse:
        user = await _user(request, "GET")
        return _list_page(_Paths.of(request), user)

    @app.post("/connect/start", name="ibkr_connect_start")
    async def start(request: Request) -> Response:
        from ibkr_provider.client.auth.oauth1a.consent import authorize_url, request_token
        from ibkr_provider.client.errors import IbkrError

        user = await _user(request, "PUT")
        form = await _form(request, user)
        target = form.get("conn_id", "").strip()
        if not target or not all(c.isalnum() or c in "_.-" for c in target):
            raise _Refused(400, "Name the connection with letters, digits, '_', '.' or '-'.")
        conn, profile = _profile(form.get("profile", ""))
        state = new_state()
        extra = conn.extra_dejson
        callback = extra.get("callback_url") or str(request.url_for("ibkr_connect_callback"))
        callback += ("&" if "?" in callback else "?") + urllib.parse.urlencode({"state": state})
        import requests

        with requests.Session() as http:
            try:
                token = request_token(profile, callback, http)
            except IbkrError as exc:
                raise _Refused(502, f"IBKR refused to start the consent: {exc}. Check {exc.hint}.") from None
        _mask(token)
        pending = PendingConsent(
            user_id=str(user.get_id()),
            profile_conn_id=conn.conn_id,
            target_conn_id=target,
            request_token=token,
            expires_at=time.time() + STATE_LIFETIME_SECONDS,
        )
        _state_store().stash(state_key(state), seal(pending), STATE_LIFETIME_SECONDS)
        response = RedirectResponse(authorize_url(profile, token), status_code=303)
        response.set_cookie(
            STATE_COOKIE,
            state,
            max_age=int(STATE_LIFETIME_SECONDS),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path=_Paths.of(request).callback,
        )
        return response

    @app.get("/connect/callback", name="ibkr_connect_callback")
    async def callback(request: Request) -> Response:
        query = request.query_params
        token, verifier = query.get("oauth_token", ""), query.get("oauth_verifier", "")
        # The login and the pending consent are checked before anything is masked: each masked
        # value adds a pattern to one regular expression Airflow rebuilds, so masking what
        # anyone sends let unauthenticated requests slow down and grow the API server.
        user = await _user(request, "PUT")
        state = query.get("state") or request.cookies.get(STATE_COOKIE, "")
        cookie = request.cookies.get(STATE_COOKIE)
        if not state or cookie is None or not same_secret(cookie, state):
            raise _Refused(
                400, "This consent was not started in this browser. Start again with Connect IBKR."
            )
        try:
            pending = unseal(_state_store().take(state_key(state)), str(user.get_id()), token)
        except ConsentRefused as exc:
            raise _Refused(400, str(exc)) from None
        _mask(token, verifier)  # they belong to this user's pending consent
        paths = _Paths.of(request)
        if query.get("denied") or not verifier:
            return _finished(
                _page(
                    "Connect IBKR",
                    '<p class="bad" role="alert">You declined at IBKR, so no connection was created '
                    "or changed.</p>",
                    home=paths.home,
                ),
                paths,
            )
        conn, profile = _profile(pending.profile_conn_id)
        return _finished(_complete(conn, profile, pending, verifier, user, paths.home), paths)

    @app.get("/connect/disconnect", name="ibkr_disconnect")
    async def disconnect_page(request: Request, conn_id: str = "") -> HTMLResponse:
        user = await _user(request, "PUT")
        paths = _Paths.of(request)
        return _page(
            "Disconnect IBKR",
            f"""<p>Remove the IBKR access token of <b>{html.escape(conn_id)}</b>?
Its DAGs stop working until you connect again. The consumer's keys stay.</p>
<form method="post" action="{html.escape(paths.disconnect)}">
<input type="hidden" name="csrf" value="{_csrf(user)}">
<input type="hidden" name="conn_id" value="{html.escape(conn_id)}">
<button type="submit">Disconnect</button></form>""",
            home=paths.home,
        )

    @app.post("/connect/disconnect")
    async def disconnect(request: Request) -> HTMLResponse:
        from airflow.models.connection import Connection
        from airflow.utils.session import create_session
        from sqlalchemy import select

        user = await _user(request, "PUT")
        form = await _form(request, user)
        conn_id = form.get("conn_id", "")
        with create_session() as session:
            conn = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
            if conn is None or not conn.extra_dejson.get("connected_by"):
                raise _Refused(404, f"{conn_id!r} is not a connection Connect IBKR made.")
        ended = await asyncio.to_thread(_end_session, conn_id)
        with create_session() as session:
            conn = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
            if conn is None:
                raise _Refused(404, f"{conn_id!r} is gone.")
            extra = {k: v for k, v in conn.extra_dejson.items() if k not in ("access_token", "connected_by")}
            conn.set_extra(json.dumps(extra))
            # Airflow's password setter ignores None (FernetFieldsMixin.set_password): clear the column
            conn._password = None
            conn.is_encrypted = False
        return _list_page(
            _Paths.of(request), user, f"Disconnected {conn_id}: its access token is removed; {ended}."
        )

    return app


def _end_session(conn_id: str) -> str:
    """Log the connection's IBKR session out and delete its shared record before its token goes
    (a blocking client call: the route runs it in a thread). Returns what happened, for the page."""
    from ibkr_provider.client import IbkrError
    from ibkr_provider.hooks.ibkr import IbkrHook

    try:
        with IbkrHook(ibkr_conn_id=conn_id) as hook:
            hook.get_conn().logout()
    except IbkrError as exc:
        return (
            f"its IBKR session could not be logged out ({type(exc).__name__}); IBKR ends it when it times out"
        )
    return "its IBKR session is logged out and its cached record deleted"


def _finished(response: Response, paths: _Paths) -> Response:
    """The consent is over: its state cookie goes (with the path it was set for, or the browser
    keeps it)."""
    response.delete_cookie(STATE_COOKIE, path=paths.callback)
    return response


def _complete(
    conn: Any, profile: Any, pending: PendingConsent, verifier: str, user: Any, home: str
) -> HTMLResponse:
    """Exchange the verifier, save the user's connection, test it and show its accounts."""
    import requests
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from ibkr_provider.client.auth.oauth1a.consent import access_token
    from ibkr_provider.client.errors import IbkrError

    with requests.Session() as http:
        try:
            grant = access_token(profile, pending.request_token, verifier, http)
        except IbkrError as exc:
            raise _Refused(
                502, f"IBKR refused the token exchange: {exc}. Start again with Connect IBKR."
            ) from None
    _mask(grant.access_token, grant.access_token_secret)
    extra = user_connection_fields(conn.conn_id, conn.extra_dejson, grant.access_token)
    extra["connected_by"] = str(user.get_name())
    with create_session() as session:
        target = session.scalar(select(Connection).where(Connection.conn_id == pending.target_conn_id))
        if target is None:
            target = Connection(conn_id=pending.target_conn_id, conn_type="ibkr")
            session.add(target)
        target.conn_type = "ibkr"
        target.host, target.port, target.login = conn.host, conn.port, conn.login
        target.password = grant.access_token_secret
        target.set_extra(json.dumps(extra))
        target.description = f"Connected through Connect IBKR by {user.get_name()}"
        exported = target.as_json()
    ok, message = _test(exported, pending.target_conn_id)
    kind = "IBKR marks this login as paper" if grant.is_paper else "IBKR's is_paper: false"
    outcome = "ok" if ok else "bad"
    body = (
        f"<p>Saved the connection <b>{html.escape(pending.target_conn_id)}</b> ({html.escape(kind)}).</p>"
        f'<p class="{outcome}" role="status">{"Test succeeded" if ok else "Test failed"}: '
        f"{html.escape(message)}</p>"
    )
    return _page("IBKR connected" if ok else "IBKR connection saved, but its test failed", body, home=home)


def _test(exported: str, conn_id: str) -> tuple[bool, str]:
    """The hook's own test (what the Test button runs), with the saved connection exported the
    way Airflow's test endpoint does it; the shared session names ``conn_id`` as its opener."""
    from ibkr_provider.hooks.ibkr import IbkrHook

    transient = f"ibkr_connect_{secrets.token_hex(4)}"
    variable = f"AIRFLOW_CONN_{transient.upper()}"
    os.environ[variable] = exported
    try:
        return IbkrHook(ibkr_conn_id=transient, session_owner=conn_id).test_connection()
    finally:
        os.environ.pop(variable, None)
