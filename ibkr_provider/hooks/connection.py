"""From an Airflow connection to the client: the extras read, the secrets registered, the
consumer profile merged, the session cache and its cipher placed, the client built.

One function builds the client (:func:`build_client`) for the hook's sync path and for the
triggers' async path (which runs it in a worker thread). Nothing here imports Airflow at import
time: the tests and the CLI read connections with it too.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ibkr_provider.connection_fields import ibkr_conn_fields

if TYPE_CHECKING:
    from ibkr_provider.client import IbkrClient
    from ibkr_provider.client.auth.base import SecretSink
    from ibkr_provider.client.session.record import Cipher

log = logging.getLogger(__name__)

#: Extra fields the hook reads: exactly the form's (``get_provider_info()``'s conn-fields).
EXTRA_FIELDS = tuple(ibkr_conn_fields())

#: What a connection made by Connect IBKR takes from its consumer profile (extra
#: ``consumer_profile``: the profile's connection id) instead of keeping copies: the app's
#: private key (OAuth 2.0), the consumer's keys, DH parameters and realm (OAuth 1.0a).
PROFILE_FIELDS = (
    "private_key",
    "private_key_path",
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
    for name in ("access_token", "access_token_secret", "password", "refresh_token"):
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


def auth_type_of(conn_type: str | None, extra: Mapping[str, Any]) -> str:
    """The auth type of a connection: its connection type's (``ibkr_oauth1a``, ...), or for
    ``ibkr`` the ``auth_type`` extra (default ``oauth2``). A type-specific connection whose extra
    names another auth type is an error naming the field."""
    from ibkr_provider.client.errors import IbkrConfigError
    from ibkr_provider.connection_fields import AUTH_CONN_TYPES

    named = str(extra.get("auth_type") or "").strip().lower()
    fixed = AUTH_CONN_TYPES.get(conn_type or "")
    if fixed is None:
        return named or "oauth2"
    if named and named != fixed:
        raise IbkrConfigError(
            "auth_type",
            f"a {conn_type} connection is {fixed}; remove auth_type {named!r} from its extra, or use the "
            "connection type of that auth type",
        )
    return fixed


def check_profile(
    conn_id: str, conn_type: str | None, extra: Mapping[str, Any], user_extra: Mapping[str, Any]
) -> Mapping[str, Any]:
    """The profile connection's extra, refused unless it is an IBKR connection of the user's
    connection's auth type (an OAuth 1.0a consumer, or an OAuth 2.0 app)."""
    from ibkr_provider.client.errors import IbkrConfigError
    from ibkr_provider.connection_fields import IBKR_CONN_TYPES

    wanted = str(user_extra.get("auth_type") or "oauth1a")
    if conn_type not in IBKR_CONN_TYPES or auth_type_of(conn_type, extra) != wanted:
        raise IbkrConfigError(
            "consumer_profile",
            f"{conn_id!r} is not a consumer profile (an ibkr connection of auth_type {wanted})",
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


def client_values(conn: Any, profile_extra: Mapping[str, Any] | None, sink: SecretSink) -> dict[str, Any]:
    """The connection's values for :meth:`IbkrClientConfig.from_mapping`, its keys and tokens
    handed to ``sink`` (the masker) first."""
    from ibkr_provider.connection_fields import AUTH_CONN_TYPES

    extra = extra_of(conn)
    if conn.conn_type in AUTH_CONN_TYPES:  # the connection type says the auth type
        extra = {**extra, "auth_type": auth_type_of(conn.conn_type, extra)}
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
    return values


def build_client(
    conn: Any, profile_extra: Mapping[str, Any] | None, sink: SecretSink, owner: str
) -> IbkrClient:
    """The client for ``conn`` (blocking: key files, the session cache, the first import of the
    HTTP and crypto stack). ``sink`` receives every secret the client ever creates, through a
    :class:`~ibkr_provider.client.secrets.SecretRegistry` (overlapping secrets masked whole)."""
    from ibkr_provider.client import IbkrClient
    from ibkr_provider.client.config import IbkrClientConfig
    from ibkr_provider.client.secrets import SecretRegistry

    registry = SecretRegistry(sink)
    config = IbkrClientConfig.from_mapping(client_values(conn, profile_extra, registry))
    return IbkrClient(config, secret_sink=registry, cipher=airflow_cipher(), owner=owner)
