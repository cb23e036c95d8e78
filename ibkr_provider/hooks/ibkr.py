"""``IbkrHook``: builds an :class:`~ibkr_provider.client.IbkrClient` from an Airflow connection.

Connection type ``ibkr`` (default id ``ibkr_default``). The connection is looked up lazily in
:meth:`IbkrHook.get_conn`, never at construction, so DAG parsing never touches it. Every
runtime secret the client creates (signed assertions, access token, SSO bearer) and the
private key itself are registered with Airflow's masker before they could reach a log.

Every task process that builds a hook for the same connection shares one IBKR session through
the session cache (``session_cache``; by default files in ``[ibkr] session_cache_dir``,
encrypted with Airflow's Fernet key when one is configured).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from ibkr_provider.hooks.names import DEFAULT_CONN_ID, TESTED_CONN_ID

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient, IbkrClientConfig
    from ibkr_provider.client.auth.base import SecretSink
    from ibkr_provider.client.session.record import Cipher

log = logging.getLogger(__name__)

#: Extra fields the hook reads (see get_provider_info's conn-fields).
EXTRA_FIELDS = (
    "auth_type",
    "client_key_id",
    "credential",
    "private_key",
    "private_key_path",
    "account_id",
    "ip",
    "verify",
    "timeout",
    "session_cache",
    "rate_limit",
    "tickle_interval",
    "session_refresh_lead",
    "compete_on_login",
    "displace_other_connections",
    "max_retries",
    "max_retry_seconds",
    # self-service OAuth 1.0a
    "consumer_key",
    "access_token",
    "access_token_secret",
    "signature_private_key",
    "signature_private_key_path",
    "encryption_private_key",
    "encryption_private_key_path",
    "dh_params",
    "dh_params_path",
    "dh_prime",
    "realm",
    "oauth1_query_signing",
    "consumer_profile",
)

#: What a connection made by Connect IBKR takes from its consumer profile (extra
#: ``consumer_profile``: the profile's connection id) instead of keeping copies: the consumer's
#: keys, DH parameters and realm.
PROFILE_FIELDS = (
    "signature_private_key",
    "signature_private_key_path",
    "encryption_private_key",
    "encryption_private_key_path",
    "dh_params",
    "dh_params_path",
    "dh_prime",
    "realm",
)


def default_session_cache_dir() -> Path:
    """``[ibkr] session_cache_dir``, else ``$AIRFLOW_HOME/ibkr/session_cache``."""
    from airflow.sdk import conf

    configured = conf.get("ibkr", "session_cache_dir", fallback="")
    if configured:
        return Path(configured).expanduser()
    home = os.environ.get("AIRFLOW_HOME") or conf.get("core", "airflow_home", fallback="~/airflow")
    return Path(home).expanduser() / "ibkr" / "session_cache"


def airflow_cipher() -> Cipher | None:
    """Airflow's Fernet (``[core] fernet_key``) for records at rest, or None when no key is set.

    A fresh ``AIRFLOW_HOME`` without ``airflow.cfg`` (a worker image configured only by
    environment variables, a notebook) makes Airflow return the template placeholder
    ``{FERNET_KEY}`` as the key; that and an empty key mean "no key" (one warning: records are
    stored unencrypted). A malformed key is a configuration error naming the option.
    """
    from airflow.sdk import conf
    from cryptography.fernet import Fernet, MultiFernet

    from ibkr_provider.client.errors import IbkrConfigError

    configured = (conf.get("core", "fernet_key", fallback="") or "").strip()
    if not configured or configured == "{FERNET_KEY}":
        _warn_no_fernet_key()
        return None
    try:
        return MultiFernet([Fernet(part.strip().encode()) for part in configured.split(",")])
    except (ValueError, TypeError):
        raise IbkrConfigError(
            "[core] fernet_key",
            "is not a valid Fernet key (32 url-safe base64-encoded bytes); generate one with "
            "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'",
        ) from None


@functools.cache
def _warn_no_fernet_key() -> None:
    """Say once per process that session records are stored unencrypted."""
    log.warning(
        "[core] fernet_key is not set: the shared IBKR session record is stored unencrypted "
        "(protected only by file mode or Redis access). Set a Fernet key in production."
    )


def key_secrets(values: Mapping[str, Any]) -> list[str]:
    """Every private key the connection holds, and each of its lines (a log may print one line),
    with the OAuth 1.0a access token and secret, for the masker."""
    from ibkr_provider.client.pem import read_pem
    from ibkr_provider.client.secrets import MIN_MASKED_LENGTH

    secrets: list[str] = []
    for name in ("private_key", "signature_private_key", "encryption_private_key"):
        pem = read_pem(values, name)
        if pem:
            lines = (line for line in pem.splitlines() if not line.startswith("-----"))
            secrets += [pem, *(line for line in lines if len(line) >= MIN_MASKED_LENGTH)]
    for name in ("access_token", "access_token_secret", "password"):
        if values.get(name):
            secrets.append(str(values[name]))
    return secrets


def connection_values(
    host: str | None,
    login: str | None,
    password: str | None,
    extra: Mapping[str, Any],
    *,
    port: int | None = None,
    session_cache_dir: Path | None = None,
    profile_extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The connection's fields under the names the client's config reads.

    The login is the OAuth 2.0 client id or the OAuth 1.0a consumer key; the password is the
    OAuth 1.0a access token secret. Extra keys are read under their plain names and, for
    connections saved by older forms, under ``extra__ibkr__<name>``; old key-field names under
    their current ones. ``profile_extra`` (the consumer profile's extra, for a connection made
    by Connect IBKR) supplies the :data:`PROFILE_FIELDS` the connection does not set itself.
    """
    from ibkr_provider.client.fields import RENAMED_FIELDS, with_current_names

    values: dict[str, Any] = {"base_url": host, "port": port, "client_id": login, "password": password}
    if session_cache_dir is not None:
        values["session_cache_dir"] = str(session_cache_dir)
    for name in (*EXTRA_FIELDS, *RENAMED_FIELDS):
        value = extra.get(name, extra.get(f"extra__ibkr__{name}"))
        if value is not None:
            values[name] = value
    values = with_current_names(values)
    if profile_extra is not None:
        profile = with_current_names(profile_extra)
        for name in PROFILE_FIELDS:
            if values.get(name) in (None, "") and profile.get(name) not in (None, ""):
                values[name] = profile[name]
    return values


def profile_conn_id(extra: Mapping[str, Any]) -> str | None:
    """The consumer profile a Connect IBKR connection refers to (extra ``consumer_profile``)."""
    named = str(extra.get("consumer_profile") or "").strip()
    return named or None


def check_profile(conn_id: str, conn_type: str | None, extra: Mapping[str, Any]) -> Mapping[str, Any]:
    """The profile connection's extra, refused when it is not an ``ibkr`` oauth1a connection."""
    from ibkr_provider.client.errors import IbkrConfigError

    if conn_type != "ibkr" or extra.get("auth_type") != "oauth1a":
        raise IbkrConfigError(
            "consumer_profile",
            f"{conn_id!r} is not a consumer profile (an ibkr connection of auth_type oauth1a)",
        )
    return extra


def extra_of(conn: Any) -> dict[str, Any]:
    """The connection's extra as a dict, parsed here rather than by ``extra_dejson``: Airflow's
    walks it through the log masker value by value, and a short value that is no secret (the key
    id ``main``) made every IBKR task log start with "Skipping masking for a secret as it's too
    short". The secrets in it are registered by :func:`key_secrets`, and Airflow masks the whole
    extra text when it reads the connection."""
    from ibkr_provider.client.errors import IbkrConfigError

    text = conn.extra or ""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise IbkrConfigError("extra", "is not valid JSON; fix it in the connection's Extra field") from None
    if not isinstance(data, dict):
        raise IbkrConfigError("extra", "must be a JSON object of field names to values")
    return data


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

    def get_client_config(self, secret_sink: SecretSink | None = None) -> IbkrClientConfig:
        """Read and validate the connection (raises :class:`IbkrConfigError` naming the field);
        the key and its lines go to ``secret_sink`` (Airflow's masker by default)."""
        from ibkr_provider.client.config import IbkrClientConfig

        conn = self.get_connection(self.ibkr_conn_id)
        extra = extra_of(conn)
        profile_extra = None
        if (profile_id := profile_conn_id(extra)) is not None:
            profile = self.get_connection(profile_id)
            profile_extra = check_profile(profile_id, profile.conn_type, extra_of(profile))
        values = connection_values(
            conn.host,
            conn.login,
            conn.password,
            extra,
            port=conn.port,
            session_cache_dir=default_session_cache_dir(),
            profile_extra=profile_extra,
        )
        sink = secret_sink or mask_secret
        for secret in key_secrets(values):
            sink(secret)
        return IbkrClientConfig.from_mapping(values)

    async def aget_client(self, secret_sink: SecretSink) -> IbkrClient:
        """A client built for async code (triggers). The connection is read with
        ``aget_connection`` on the event loop; parsing it (key files, PEM checks) and building
        the client (the session cache, and the first import of the client package: requests,
        PyJWT, cryptography) run in a worker thread, so the loop never blocks. ``secret_sink``
        receives every secret, to be masked with ``amask_secret`` by the caller (a blocking
        ``mask_secret`` is unsafe in the triggerer)."""
        conn = await self.aget_connection(self.ibkr_conn_id)
        extra = extra_of(conn)
        profile_extra = None
        if (profile_id := profile_conn_id(extra)) is not None:
            profile = await self.aget_connection(profile_id)
            profile_extra = check_profile(profile_id, profile.conn_type, extra_of(profile))

        def build() -> IbkrClient:
            from ibkr_provider.client import IbkrClient
            from ibkr_provider.client.config import IbkrClientConfig
            from ibkr_provider.client.secrets import SecretRegistry

            sink = SecretRegistry(secret_sink)

            values = connection_values(
                conn.host,
                conn.login,
                conn.password,
                extra,
                port=conn.port,
                session_cache_dir=default_session_cache_dir(),
                profile_extra=profile_extra,
            )
            for secret in key_secrets(values):
                sink(secret)
            return IbkrClient(
                IbkrClientConfig.from_mapping(values),
                secret_sink=sink,
                cipher=airflow_cipher(),
                owner=self.session_owner,
            )

        return await asyncio.to_thread(build)

    def get_conn(self) -> IbkrClient:
        """The client for this connection, built on first use and reused by the hook."""
        from ibkr_provider.client import IbkrClient
        from ibkr_provider.client.secrets import SecretRegistry

        if self._client is None:
            sink = SecretRegistry(mask_secret)
            self._client = IbkrClient(
                self.get_client_config(sink),
                secret_sink=sink,
                cipher=airflow_cipher(),
                owner=self.session_owner,
            )
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
                unreadable = client.store.unreadable
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
