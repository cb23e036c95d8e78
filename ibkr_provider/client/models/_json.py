"""What every model parser shares: a JSON value, and a mapping checked before it is read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ibkr_provider.client.errors import IbkrResponseError

Json = Any


def require_mapping(payload: Json, what: str) -> Mapping[str, Any]:
    """``payload`` when it is a JSON object; otherwise IBKR answered in a shape the client cannot read."""
    if not isinstance(payload, Mapping):
        raise IbkrResponseError(f"expected a JSON object for {what}, got {type(payload).__name__}")
    return payload
