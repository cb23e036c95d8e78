"""IBKR's Flex Web Service: reports by query id, with their own token and error codes.

The names below load on first use (importing the package does not import the HTTP stack).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ibkr_provider.flex.client import FlexClient
    from ibkr_provider.flex.codes import FlexCode
    from ibkr_provider.flex.report import FlexReport

_LAZY = {
    "FlexClient": "ibkr_provider.flex.client",
    "FlexCode": "ibkr_provider.flex.codes",
    "FlexReport": "ibkr_provider.flex.report",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["FlexClient", "FlexCode", "FlexReport"]
