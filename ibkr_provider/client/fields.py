"""What a person types, read strictly: the booleans that guard money, finite numbers, IBKR
account ids and the URL path segments built from them.

Money is at stake, so these readers fail closed. A boolean that switches live trading on is
``True``/``False`` or the unambiguous words ``true``/``false`` (any case): the text
``"false"`` is truthy in Python, and a template rendered as text gives ``"False"``, so plain
truthiness once sent a live order. Every other value is refused with an error naming the field,
before anything is sent. A number is finite (NaN compares false with everything, so
``quantity <= 0`` let it through) and, where it sizes an order, positive.

IBKR account ids are letters then digits (``U1234567``, ``DU1234567``, ``F1234567``); nothing else
may reach a URL path, where ``DU1234567/../U3456789`` would resolve to another account.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlsplit

from ibkr_provider.client.errors import IbkrValidationError

#: IBKR account ids: one or more letters, then digits (Web API documentation, Account ids).
_ACCOUNT_ID = re.compile(r"[A-Za-z]{1,6}[0-9]{1,16}")


def guard_flag(field: str, value: Any) -> bool:
    """A boolean that guards money (``dry_run``, ``allow_live``, approval switches).

    Only ``True``/``False`` and the words ``true``/``false`` (any case, surrounding spaces
    ignored) are accepted. Anything else (``"yes"``, ``1``, ``None``, an unrendered template)
    raises :class:`IbkrValidationError`, so an unclear value can never switch live trading on.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "false"):
            return word == "true"
    raise IbkrValidationError(
        field,
        f"{str(value)[:80]!r} is not a boolean; pass True or False (or the text 'true' or 'false'). "
        "Any other value is refused so that it cannot switch live trading on",
    )


def finite_number(field: str, value: Any, *, positive: bool = False) -> float | None:
    """``value`` as a finite float (None for None or ""), positive when ``positive`` is set.

    Booleans are refused (``True`` is 1 to Python, never a quantity a person meant)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise IbkrValidationError(field, f"{value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise IbkrValidationError(field, f"{str(value)[:80]!r} is not a number") from None
    if not math.isfinite(number):
        raise IbkrValidationError(field, f"{value!r} is not a finite number")
    if positive and number <= 0:
        raise IbkrValidationError(field, f"must be positive (got {number:g})")
    return number


def decimal_number(field: str, value: Any) -> Decimal:
    """``value`` as a finite Decimal (money and weights stay exact); booleans, text that is not a
    number, NaN and infinities are refused by name."""
    if isinstance(value, bool) or value is None:
        raise IbkrValidationError(field, f"{value!r} is not a number")
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, float) else Decimal(repr(value))
    except InvalidOperation:
        raise IbkrValidationError(field, f"{str(value)[:80]!r} is not a number") from None
    if not number.is_finite():
        raise IbkrValidationError(field, f"{value!r} is not a finite number")
    return number


def account_id(value: Any, field: str = "account_id") -> str:
    """An IBKR account id, checked so that it can go into a URL path: letters then digits."""
    text = str(value).strip() if value is not None else ""
    if not _ACCOUNT_ID.fullmatch(text):
        raise IbkrValidationError(
            field, f"{text[:80]!r} is not an IBKR account id: letters then digits, such as U1234567"
        )
    return text


def path_segment(value: Any) -> str:
    """One URL path segment from a value: percent-encoded, so that ``/``, ``..`` or ``?`` in it
    can never change which endpoint the request reaches (a segment of only dots is encoded too:
    ``quote`` leaves dots alone, and a server resolves ``..`` before routing)."""
    encoded = quote(str(value), safe="")
    if encoded.strip(".") == "":
        encoded = encoded.replace(".", "%2E")
    return encoded


#: Connection extras renamed so that Airflow redacts them by name (its list of sensitive names
#: matches "private_key", not "signature_key"): REST answers and logs show ``***``. The old
#: names are still read.
RENAMED_FIELDS = {
    "signature_key": "signature_private_key",
    "signature_key_path": "signature_private_key_path",
    "encryption_key": "encryption_private_key",
    "encryption_key_path": "encryption_private_key_path",
}


def with_current_names(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with the old key-field names read under the current ones (a current name
    wins when both are set)."""
    current = {k: v for k, v in values.items() if k not in RENAMED_FIELDS}
    for old, new in RENAMED_FIELDS.items():
        if current.get(new) in (None, "") and values.get(old) not in (None, ""):
            current[new] = values[old]
    return current


def redacted_url(url: str) -> str:
    """``url`` without its password (``redis://user:***@host:6379/1``), for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return parts._replace(netloc=f"{user}:***@{host}{port}").geturl()
    except ValueError:
        return "<a redis URL that cannot be parsed>"
