"""``IbkrFlexHook``: the Flex Web Service client from an ``ibkr_flex`` connection.

Connection type ``ibkr_flex`` (default id ``ibkr_flex_default``): the Flex token in the
password (registered with the masker), the host defaulting to IBKR's Flex Web Service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from ibkr_provider.client.errors import IbkrConfigError, IbkrError
from ibkr_provider.client.hosts import DEFAULT_FLEX_URL, FLEX_SERVICE_PATH
from ibkr_provider.hooks.connection import extra_of
from ibkr_provider.hooks.names import DEFAULT_FLEX_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from ibkr_provider.flex.client import FlexClient


def _number(
    name: str, extra: Mapping[str, Any], default: float, low: float, high: float, example: str
) -> float:
    from ibkr_provider.client import fields

    parsed = fields.number(
        name,
        extra.get(name),
        default=default,
        minimum=low,
        maximum=high,
        example=example,
        error=IbkrConfigError,
    )
    return default if parsed is None else parsed


class IbkrFlexHook(BaseHook):
    """Fetch IBKR Flex reports.

    Example::

        report = IbkrFlexHook().get_conn().fetch("123456")
        trades = report.rows("Trades")

    :param ibkr_flex_conn_id: the ``ibkr_flex`` connection.
    """

    conn_name_attr = "ibkr_flex_conn_id"
    default_conn_name = DEFAULT_FLEX_CONN_ID
    conn_type = "ibkr_flex"
    hook_name = "Interactive Brokers Flex"

    def __init__(self, ibkr_flex_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ibkr_flex_conn_id = ibkr_flex_conn_id

    def get_conn(self) -> FlexClient:
        """The Flex client for this connection (close it, or use it as a context manager)."""
        return _flex_client(self.get_connection(self.ibkr_flex_conn_id), mask_secret)

    async def aget_conn(self, secret_sink: Callable[[str], object]) -> FlexClient:
        """The Flex client, for a trigger: the connection read with ``aget_connection``, the
        token handed to ``secret_sink`` for the caller to mask with ``amask_secret`` (the
        blocking ``mask_secret`` is unsafe in the triggerer). The client is built in a worker
        thread (the first import of requests must not block the loop)."""
        conn = await self.aget_connection(self.ibkr_flex_conn_id)
        return await asyncio.to_thread(_flex_client, conn, secret_sink)

    def default_query_id(self) -> str | None:
        """The connection's ``query_id`` extra: the query operators use when they name none."""
        value = extra_of(self.get_connection(self.ibkr_flex_conn_id)).get("query_id")
        text = str(value).strip() if value is not None else ""
        if text and not text.isdigit():
            raise IbkrConfigError("query_id", f"{text!r} is not a Flex query id (digits)")
        return text or None

    def test_connection(self) -> tuple[bool, str]:
        """Ask IBKR whether it accepts the token (one SendRequest; never raises).

        With the connection's ``query_id`` the request names that query, so a green test proves
        token and query; without one it names a probe id that IBKR rejects as an invalid query
        only after accepting the token (see :meth:`FlexClient.check_token`).
        """
        try:
            with self.get_conn() as client:
                query_id = self.default_query_id()
                answer = client.check_token(query_id) if query_id else client.check_token()
                where = client.base_url
        except IbkrError as exc:
            return False, f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            return False, f"Unexpected {type(exc).__name__}: {exc}"
        return True, f"Flex Web Service at {where}: {answer}"


def _flex_client(conn: Connection, secret_sink: Callable[[str], object]) -> FlexClient:
    from ibkr_provider.client import fields
    from ibkr_provider.flex.client import FlexClient

    token = (conn.password or "").strip()
    if not token:
        raise IbkrConfigError(
            "password",
            "the ibkr_flex connection needs the Flex token in its password (Client Portal > "
            "Settings > Flex Web Service)",
        )
    secret_sink(token)
    extra = extra_of(conn)
    return FlexClient(
        token=token,
        base_url=flex_base_url(conn.host, conn.port),
        verify=fields.verify(extra.get("verify"), error=IbkrConfigError),
        timeout=_number("timeout", extra, 30.0, 0.001, 600, "30"),
        poll_interval=_number("poll_interval", extra, 5.0, 0.1, 600, "5"),
        max_wait=_number("max_wait", extra, 600.0, 1, 86_400, "600"),
    )


def flex_base_url(host: str | None, port: int | None = None) -> str:
    """The Flex Web Service root for a connection's host.

    Users type ``ndcdyn.interactivebrokers.com``, a URL without a path, or the full service
    URL; a host without a path gets IBKR's ``/AccountManagement/FlexWebService``.
    """
    text = (host or "").strip().rstrip("/")
    if not text:
        return DEFAULT_FLEX_URL
    if "://" not in text:
        text = f"https://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise IbkrConfigError(
            "host", f"{host!r} is not a host name or http(s) URL; use e.g. {DEFAULT_FLEX_URL}"
        )
    from ibkr_provider.client.fields import url_with_port

    text = url_with_port(text, port, error=IbkrConfigError)
    return text if parts.path not in ("", "/") else f"{text}{FLEX_SERVICE_PATH}"
