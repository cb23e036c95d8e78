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


def optional_text(data: Mapping[str, Any], key: str, what: str) -> str | None:
    """``data[key]`` as text (IBKR sends some ids as numbers), None when absent; anything else
    (an object, a list, a boolean) is an answer the client cannot read."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise IbkrResponseError(f"{what}: '{key}' is a {type(value).__name__}, not text")
    return str(value)


def optional_int(data: Mapping[str, Any], key: str, what: str) -> int | None:
    """``data[key]`` as a whole number (or its digits as text), None when absent or empty."""
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise IbkrResponseError(f"{what}: '{key}' is {str(value)[:40]!r}, not a whole number")


def optional_mapping(data: Mapping[str, Any], key: str, what: str) -> Mapping[str, Any]:
    """``data[key]`` when it is a JSON object, empty when absent."""
    value = data.get(key)
    if value is None:
        return {}
    return require_mapping(value, f"{what} '{key}'")


def flag(data: Mapping[str, Any], key: str, what: str, default: bool = False) -> bool:
    """``data[key]`` as a JSON boolean (``default`` when absent): the text ``"false"`` is not
    false to ``bool()``, so anything but a boolean is an answer the client cannot read."""
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise IbkrResponseError(f"{what}: '{key}' is {str(value)[:40]!r}, not true or false")
    return value
