"""IBKR's Flex Web Service: reports by query id, with their own token and error codes.

The names below load on first use (importing the package does not import the HTTP stack).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ibkr_provider.lazy import lazy_attributes

if TYPE_CHECKING:
    from ibkr_provider.flex.client import FlexClient
    from ibkr_provider.flex.codes import FlexCode
    from ibkr_provider.flex.report import FlexReport

__getattr__ = lazy_attributes(
    __name__,
    {
        "FlexClient": "ibkr_provider.flex.client",
        "FlexCode": "ibkr_provider.flex.codes",
        "FlexReport": "ibkr_provider.flex.report",
    },
)

__all__ = ["FlexClient", "FlexCode", "FlexReport"]
