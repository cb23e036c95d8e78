"""``IbkrHook``: builds an :class:`~ibkr_provider.client.IbkrClient` from an Airflow connection.

Connection type ``ibkr`` (default id ``ibkr_default``), or one of the types of one auth type each
(``ibkr_oauth2``, ``ibkr_oauth1a``, ``ibkr_gateway``: the same hook; their forms show only their
own fields). Any of them serves any operator: the hook reads the connection by id.

The connection is looked up lazily in :meth:`IbkrHook.get_conn`, never at construction, so DAG
parsing never touches it. Every runtime secret the client creates (signed assertions, access
token, SSO bearer) and the private key itself are registered with Airflow's masker before they
could reach a log.

Every task process that builds a hook for the same connection shares one IBKR session through
the session cache (``session_cache``; by default files in ``[ibkr] session_cache_dir``,
encrypted with Airflow's Fernet key when one is configured).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from ibkr_provider.hooks.connection import (
    build_client,
    check_profile,
    client_values,
    extra_of,
    profile_conn_id,
)
from ibkr_provider.hooks.names import DEFAULT_CONN_ID, TESTED_CONN_ID

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient, IbkrClientConfig
    from ibkr_provider.client.auth.base import SecretSink


class IbkrHook(BaseHook):
    """Interact with the Interactive Brokers Web API.

    Example::

        with IbkrHook(ibkr_conn_id="ibkr_default") as hook:
            client = hook.get_conn()
            for account in client.list_accounts():
                print(account.account_id, client.account_summary(account.account_id).net_liquidation)

    The client is built on first use and reused; :meth:`close` (or leaving the ``with`` block)
    releases its keep-alive registration and HTTP connections. The IBKR session stays open for
    every other task sharing it.

    :param ibkr_conn_id: the ``ibkr`` connection to use.
    :param session_owner: how the shared session names its opener (default: ``ibkr_conn_id``);
        errors about who holds an IBKR user's brokerage session show it.
    """

    conn_name_attr = "ibkr_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "ibkr"
    hook_name = "Interactive Brokers"

    def __init__(
        self, ibkr_conn_id: str = default_conn_name, *, session_owner: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.ibkr_conn_id = ibkr_conn_id
        self.session_owner = session_owner or TESTED_CONN_ID.get() or ibkr_conn_id
        self._client: IbkrClient | None = None
        self._given: Any = None

    @classmethod
    def of_connection(cls, conn: Any, *, session_owner: str | None = None) -> IbkrHook:
        """A hook for a connection object in hand rather than one looked up by id: the API
        server's Connect IBKR page tests a connection it just saved or listed with it (no
        process-wide environment variable, no second lookup). A consumer profile it refers to is
        still looked up by id."""
        hook = cls(ibkr_conn_id=conn.conn_id, session_owner=session_owner)
        hook._given = conn
        return hook

    def _connection(self) -> Any:
        return self._given if self._given is not None else self.get_connection(self.ibkr_conn_id)

    def _profile_extra(self, extra: Mapping[str, Any]) -> Mapping[str, Any] | None:
        profile_id = profile_conn_id(extra)
        if profile_id is None:
            return None
        profile = self.get_connection(profile_id)
        return check_profile(profile_id, profile.conn_type, extra_of(profile), extra)

    def get_client_config(self, secret_sink: SecretSink | None = None) -> IbkrClientConfig:
        """Read and validate the connection (raises :class:`IbkrConfigError` naming the field);
        the key and its lines go to ``secret_sink`` (Airflow's masker by default)."""
        from ibkr_provider.client.config import IbkrClientConfig

        conn = self._connection()
        values = client_values(conn, self._profile_extra(extra_of(conn)), secret_sink or mask_secret)
        return IbkrClientConfig.from_mapping(values)

    async def aget_client(self, secret_sink: SecretSink) -> IbkrClient:
        """A client built for async code (triggers). The connections are read with
        ``aget_connection`` on the event loop; building the client (key files, PEM checks, the
        session cache, the first import of requests, PyJWT and cryptography) runs in a worker
        thread, so the loop never blocks. ``secret_sink`` receives every secret, to be masked
        with ``amask_secret`` by the caller (a blocking ``mask_secret`` is unsafe in the
        triggerer)."""
        conn = await self.aget_connection(self.ibkr_conn_id)
        extra = extra_of(conn)
        profile_extra = None
        if (profile_id := profile_conn_id(extra)) is not None:
            profile = await self.aget_connection(profile_id)
            profile_extra = check_profile(profile_id, profile.conn_type, extra_of(profile), extra)
        return await asyncio.to_thread(build_client, conn, profile_extra, secret_sink, self.session_owner)

    def get_conn(self) -> IbkrClient:
        """The client for this connection, built on first use and reused by the hook."""
        if self._client is None:
            conn = self._connection()
            profile_extra = self._profile_extra(extra_of(conn))
            self._client = build_client(conn, profile_extra, mask_secret, self.session_owner)
        return self._client

    def close(self) -> None:
        """Close the client this hook built, if any (safe to call twice)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> IbkrHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def test_connection(self) -> tuple[bool, str]:
        """Prove the connection's credentials without taking anyone's brokerage session (see
        :mod:`ibkr_provider.client.session.probe`) and list the accounts when this connection's brokerage
        session is usable; never raises (the UI's Test button runs it in the API server, so the
        client is closed afterwards). The message says which proof was made."""
        from ibkr_provider.client import IbkrError
        from ibkr_provider.client.session.probe import probe

        try:
            with self:
                client = self.get_conn()
                where = f"{client.config.base_url} ({client.config.auth_type.value})"
                result = probe(client.sessions)
                kinds = [
                    (a.account_id, "paper" if client.portfolio.is_paper(a.account_id) else "live")
                    for a in (client.list_accounts() if result.ok and result.brokerage else [])
                ]
                unreadable = client.sessions.store.unreadable
        except IbkrError as exc:
            return False, f"{type(exc).__name__}: {exc}. Check {exc.hint}."
        except Exception as exc:
            return False, f"Unexpected {type(exc).__name__}: {exc}"
        if not result.ok:
            return False, f"{where}: {result.note} (checked with {result.proof})"
        note = (
            "; note: the shared session record could not be read (another host's [core] fernet_key "
            "differs, or the record is corrupt), so this Test opened a session of its own"
            if unreadable
            else ""
        )
        if not result.brokerage:
            return True, f"Credentials accepted by {where}, proven by {result.proof}; {result.note}{note}"
        ids = ", ".join(f"{account} ({kind})" for account, kind in kinds) or "none"
        return True, f"Connected to {where}, proven by {result.proof}; accounts: {ids}{note}"


class IbkrOAuth2Hook(IbkrHook):
    """:class:`IbkrHook` for connection type ``ibkr_oauth2``: its form shows the OAuth 2.0 fields
    only, and the auth type is the connection type's."""

    conn_type = "ibkr_oauth2"
    hook_name = "Interactive Brokers (OAuth 2.0)"


class IbkrOAuth1aHook(IbkrHook):
    """:class:`IbkrHook` for connection type ``ibkr_oauth1a`` (self-service OAuth 1.0a)."""

    conn_type = "ibkr_oauth1a"
    hook_name = "Interactive Brokers (OAuth 1.0a self-service)"


class IbkrGatewayHook(IbkrHook):
    """:class:`IbkrHook` for connection type ``ibkr_gateway`` (a Client Portal Gateway)."""

    conn_type = "ibkr_gateway"
    hook_name = "Interactive Brokers (Client Portal Gateway)"
