"""What Connect IBKR does with Airflow's connections and IBKR: the consumer profile read from its
connection, the pending consents' store, the token exchange, the user's connection saved and
tested, and a disconnected connection's session logged out.

Everything Airflow-internal is imported when a request comes, not when the plugin loads.
"""

from __future__ import annotations

import json
from typing import Any

from ibkr_provider.connection_fields import IBKR_CONN_TYPES
from ibkr_provider.hooks.connection import auth_type_of
from ibkr_provider.plugins.pages import Refused


def ibkr_connections() -> list[Any]:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        found = session.scalars(select(Connection).where(Connection.conn_type.in_(IBKR_CONN_TYPES))).all()
        for conn in found:
            session.expunge(conn)
    return sorted(found, key=lambda c: c.conn_id)


def is_oauth2_profile(conn_type: str, extra: Any) -> bool:
    """An OAuth 2.0 app profile: an ``oauth2`` connection naming an authorization server
    (``issuer``, or ``authorize_url``) that holds no user's grant and refers to no profile."""
    return (
        auth_type_of(conn_type, extra) == "oauth2"
        and bool(extra.get("issuer") or extra.get("authorize_url"))
        and not extra.get("refresh_token")
        and not extra.get("consumer_profile")
    )


def consumer_profile(conn_id: str) -> tuple[Any, Any]:
    """The consumer profile connection and the client-side view of it: an OAuth 1.0a
    :class:`ConsumerProfile` or an OAuth 2.0 :class:`OAuth2AppProfile`."""
    from airflow.models.connection import Connection

    from ibkr_provider.client import fields
    from ibkr_provider.client.auth.oauth1a.consent import DEFAULT_AUTHORIZE_URL, ConsumerProfile
    from ibkr_provider.client.errors import IbkrConfigError
    from ibkr_provider.client.settings.oauth1a import consumer_realm, required_rsa_key
    from ibkr_provider.client.settings.oauth2_user import OAuth2AppProfile
    from ibkr_provider.hooks.connection import connection_values

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except Exception:
        raise Refused(400, f"There is no connection {conn_id!r} to use as consumer profile.") from None
    extra = conn.extra_dejson
    values = connection_values(conn.host, conn.login, conn.password, extra, port=conn.port)
    if conn.conn_type in IBKR_CONN_TYPES and is_oauth2_profile(conn.conn_type, extra):
        try:
            return conn, OAuth2AppProfile.parse(values)
        except IbkrConfigError as exc:
            raise Refused(400, f"The app profile {conn_id!r} is incomplete: {exc}") from None
    if (
        conn.conn_type not in IBKR_CONN_TYPES
        or auth_type_of(conn.conn_type, extra) != "oauth1a"
        or not conn.login
    ):
        raise Refused(
            400,
            f"{conn_id!r} is not a consumer profile (an ibkr oauth1a connection with a consumer key, or an "
            "oauth2 connection with an issuer).",
        )
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
    """Log the connection's IBKR session out and delete its shared record before its token goes,
    and revoke an OAuth 2.0 grant where the authorization server offers revocation (RFC 7009)
    (blocking client calls: the route runs this in a thread). Returns what happened, for the page."""
    from ibkr_provider.client import IbkrError
    from ibkr_provider.client.auth.oauth2_user import OAuth2UserGrantAuth
    from ibkr_provider.hooks.ibkr import IbkrHook

    said = []
    with IbkrHook(ibkr_conn_id=conn_id) as hook:
        client = hook.get_conn()
        try:
            client.logout()
            said.append("its IBKR session is logged out and its cached record deleted")
        except IbkrError as exc:
            said.append(
                f"its IBKR session could not be logged out ({type(exc).__name__}); IBKR ends it when it "
                "times out"
            )
        auth = client.sessions.sender.auth
        if isinstance(auth, OAuth2UserGrantAuth):
            try:
                revoked = auth.revoke(client.sessions.sender.transport)
                said.append("its grant is revoked at IBKR" if revoked else "IBKR offers no revocation")
            except IbkrError as exc:
                said.append(f"revoking its grant failed ({type(exc).__name__}: {exc.message})")
    return "; ".join(said)


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
        gone = ("access_token", "refresh_token", "connected_by")
        extra = {k: v for k, v in conn.extra_dejson.items() if k not in gone}
        conn.set_extra(json.dumps(extra))
        # Airflow's password setter ignores None (FernetFieldsMixin.set_password): clear the column
        conn._password = None
        conn.is_encrypted = False
    return True
