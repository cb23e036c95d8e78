"""What Connect IBKR does with Airflow's connections and IBKR: the consumer profile read from its
connection, the pending consents' store, the token exchange, the user's connection saved and
tested, and a disconnected connection's session logged out.

Everything Airflow-internal is imported when a request comes, not when the plugin loads.
"""

from __future__ import annotations

import html
import json
from typing import Any

from fastapi.responses import HTMLResponse

from ibkr_provider.connection_fields import IBKR_CONN_TYPES
from ibkr_provider.hooks.connection import auth_type_of
from ibkr_provider.plugins.consent import PendingConsent, user_connection_fields
from ibkr_provider.plugins.pages import Refused, mask, page


def ibkr_connections() -> list[Any]:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        found = session.scalars(select(Connection).where(Connection.conn_type.in_(IBKR_CONN_TYPES))).all()
        for conn in found:
            session.expunge(conn)
    return sorted(found, key=lambda c: c.conn_id)


def consumer_profile(conn_id: str) -> tuple[Any, Any]:
    """The consumer profile connection and the client-side view of it."""
    from airflow.models.connection import Connection

    from ibkr_provider.client import fields
    from ibkr_provider.client.auth.oauth1a.consent import DEFAULT_AUTHORIZE_URL, ConsumerProfile
    from ibkr_provider.client.errors import IbkrConfigError
    from ibkr_provider.client.settings.oauth1a import consumer_realm, required_rsa_key
    from ibkr_provider.hooks.connection import connection_values

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except Exception:
        raise Refused(400, f"There is no connection {conn_id!r} to use as consumer profile.") from None
    extra = conn.extra_dejson
    if (
        conn.conn_type not in IBKR_CONN_TYPES
        or auth_type_of(conn.conn_type, extra) != "oauth1a"
        or not conn.login
    ):
        raise Refused(
            400, f"{conn_id!r} is not a consumer profile (an ibkr oauth1a connection with a consumer key)."
        )
    values = connection_values(conn.host, conn.login, conn.password, extra, port=conn.port)
    try:
        profile = ConsumerProfile(
            base_url=base_url(conn.host, conn.port),
            consumer_key=conn.login,
            signature_key=required_rsa_key(
                values, "signature_private_key", "the consumer's private signature key"
            ),
            realm=consumer_realm(values, conn.login),
            authorize_url=extra.get("authorize_url") or DEFAULT_AUTHORIZE_URL,
            verify=fields.verify(extra.get("verify"), error=IbkrConfigError),
        )
    except IbkrConfigError as exc:
        raise Refused(400, f"The consumer profile {conn_id!r} is incomplete: {exc}") from None
    return conn, profile


def base_url(host: str | None, port: int | None) -> str:
    from ibkr_provider.client.errors import IbkrConfigError
    from ibkr_provider.client.fields import url_with_port
    from ibkr_provider.client.hosts import DEFAULT_BASE_URL

    return url_with_port((host or DEFAULT_BASE_URL).rstrip("/"), port, error=IbkrConfigError)


def state_store() -> Any:
    """Where pending consents wait: ``[ibkr] connect_state_cache`` (``file``, the default, for one
    API server host; ``redis://...`` when several API servers share the callback)."""
    from airflow.sdk import conf

    from ibkr_provider.client.session.stores.factory import build_session_store
    from ibkr_provider.hooks.connection import airflow_cipher, default_session_cache_dir

    spec = conf.get("ibkr", "connect_state_cache", fallback="") or None
    return build_session_store(spec, default_dir=default_session_cache_dir(), cipher=airflow_cipher())


def end_session(conn_id: str) -> str:
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


def may_replace(conn_id: str, user: Any) -> None:
    """Refused unless ``conn_id`` is new or names a connection Connect IBKR made for ``user``
    (kept after a Disconnect, so they can connect it again): a consent never overwrites another
    user's connection, a connection made by hand, or a connection of another type."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        conn = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
        if conn is None:
            return
        mine = (
            conn.conn_type in IBKR_CONN_TYPES
            and bool(conn.extra_dejson.get("consumer_profile"))
            and made_for(conn.extra_dejson, user) is True
        )
    if not mine:
        raise Refused(
            409,
            f"{conn_id!r} exists and is not a connection Connect IBKR made for you; nothing was changed. "
            "Name a new connection.",
        )


def made_for(extra: Any, user: Any) -> bool | None:
    """Whether Connect IBKR made the connection of ``extra`` for ``user`` (its owner id, or for
    a connection saved before ids were kept, its owner's name); None when it names no owner."""
    owner = extra.get("connected_by_id")
    if owner is not None:
        return str(owner) == str(user.get_id())
    name = extra.get("connected_by")
    return None if name is None else str(name) == str(user.get_name())


def shown_to(conn: Any, user: Any) -> bool:
    """Whether Connect IBKR lists ``conn`` to ``user``: every connection but the ones Connect
    IBKR made for another Airflow user (each user sees their own, the profiles and the shared
    connections an admin made)."""
    return made_for(conn.extra_dejson, user) is not False


def made_by_connect(conn_id: str) -> bool:
    """Whether ``conn_id`` is a connection Connect IBKR made and that holds a token."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        conn = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
        return conn is not None and bool(conn.extra_dejson.get("connected_by"))


def forget_token(conn_id: str) -> bool:
    """Remove the access token and secret of a connection Connect IBKR made (its owner stays, so
    they can connect it again); False when it is gone."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        conn = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
        if conn is None:
            return False
        extra = {k: v for k, v in conn.extra_dejson.items() if k not in ("access_token", "connected_by")}
        conn.set_extra(json.dumps(extra))
        # Airflow's password setter ignores None (FernetFieldsMixin.set_password): clear the column
        conn._password = None
        conn.is_encrypted = False
    return True


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
    """Exchange the verifier, save the user's connection, test it and show its accounts."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

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
    extra = user_connection_fields(conn.conn_id, conn.extra_dejson, grant.access_token)
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
        target.password = grant.access_token_secret
        target.set_extra(json.dumps(extra))
        target.description = f"Connected through Connect IBKR by {user.get_name()}"
        exported = target.as_json()
    ok, message = test_saved(exported, pending.target_conn_id)
    kind = "IBKR marks this login as paper" if grant.is_paper else "IBKR's is_paper: false"
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
