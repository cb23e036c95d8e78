"""``IbkrFlexHook``: the Flex Web Service client from an ``ibkr_flex`` connection.

Connection type ``ibkr_flex`` (default id ``ibkr_flex_default``): the Flex token in the
password (registered with the masker), the host defaulting to IBKR's Flex Web Service.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from ibkr_provider.client.config import parse_number, parse_timeout, parse_verify
from ibkr_provider.client.errors import IbkrConfigError, IbkrError
from ibkr_provider.client.flex import DEFAULT_FLEX_URL, FlexClient


class IbkrFlexHook(BaseHook):
    """Fetch IBKR Flex reports.

    Example::

        report = IbkrFlexHook().get_conn().fetch("123456")
        trades = report.rows("Trades")

    :param ibkr_flex_conn_id: the ``ibkr_flex`` connection.
    """

    conn_name_attr = "ibkr_flex_conn_id"
    default_conn_name = "ibkr_flex_default"
    conn_type = "ibkr_flex"
    hook_name = "Interactive Brokers Flex"

    def __init__(self, ibkr_flex_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ibkr_flex_conn_id = ibkr_flex_conn_id

    def get_conn(self) -> FlexClient:
        conn = self.get_connection(self.ibkr_flex_conn_id)
        token = (conn.password or "").strip()
        if not token:
            raise IbkrConfigError(
                "password",
                "the ibkr_flex connection needs the Flex token in its password (Client Portal > "
                "Settings > Flex Web Service)",
            )
        mask_secret(token)
        extra = conn.extra_dejson
        host = (conn.host or "").strip().rstrip("/")
        if host and "://" not in host:
            host = f"https://{host}"
        return FlexClient(
            token=token,
            base_url=host or DEFAULT_FLEX_URL,
            verify=parse_verify(extra.get("verify")),
            timeout=parse_timeout(extra.get("timeout")),
            poll_interval=parse_number(
                "poll_interval", extra.get("poll_interval"), 5.0, minimum=0.1, example="5"
            ),
            max_wait=parse_number("max_wait", extra.get("max_wait"), 600.0, minimum=1, example="600"),
        )

    def test_connection(self) -> tuple[bool, str]:
        """Checks the connection's settings (a real check would generate a report: Flex is slow
        and rate-limited, so the button does not do that)."""
        try:
            client = self.get_conn()
        except IbkrError as exc:
            return False, f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            return False, f"Unexpected {type(exc).__name__}: {exc}"
        return True, f"Flex token set; Flex Web Service at {client.base_url}"
