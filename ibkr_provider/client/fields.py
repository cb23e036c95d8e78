"""What a person types, read strictly, one reader of each kind: booleans, numbers, exact
numbers, IBKR account ids, base URLs and URL path segments, the TLS ``verify`` setting.

Each reader takes the error to raise: :class:`IbkrConfigError` for a connection field,
:class:`IbkrValidationError` (the default) for a task argument; either names the field and the
fix, before anything is sent.

Money is at stake, so the readers fail closed. A boolean is ``True``/``False`` or the words
``true``/``false`` (any case): the text ``"false"`` is truthy in Python, and a template rendered as
text gives ``"False"``, so plain truthiness once sent a live order. A number is finite (NaN
compares false with everything, so ``quantity <= 0`` let it through) and within its bounds. IBKR
account ids are letters then digits (``U1234567``, ``DU1234567``); nothing else may reach a URL
path, where ``DU1234567/../U3456789`` would resolve to another account.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from ibkr_provider.client.errors import IbkrError, IbkrValidationError
from ibkr_provider.client.hosts import DEFAULT_BASE_URL

#: How a reader reports a bad value: ``IbkrConfigError`` or ``IbkrValidationError`` (field, message).
FieldError = Callable[[str, str], IbkrError]
_UNSET: Any = object()

#: IBKR account ids: one or more letters, then digits.
ACCOUNT_ID = re.compile(r"[A-Za-z]{1,6}[0-9]{1,16}")

#: Connection extras renamed so that Airflow redacts them by name (its list of sensitive names
#: matches "private_key", not "signature_key"): REST answers and logs show ``***``. The old
#: names are still read.
RENAMED_FIELDS = {
    "signature_key": "signature_private_key",
    "signature_key_path": "signature_private_key_path",
    "encryption_key": "encryption_private_key",
    "encryption_key_path": "encryption_private_key_path",
}


def _shown(value: Any) -> str:
    return repr(str(value)[:80])


def flag(field: str, value: Any, *, default: Any = _UNSET, error: FieldError = IbkrValidationError) -> bool:
    """A boolean: ``True``/``False`` or the words ``true``/``false`` (any case, spaces ignored).
    None or "" give ``default`` when one is given; anything else (``"yes"``, ``1``, an
    unrendered template) raises, so an unclear value can never switch live trading on."""
    if (value is None or value == "") and default is not _UNSET:
        return bool(default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise error(
        field,
        f"{_shown(value)} is not a boolean; pass True or False (or the text 'true' or 'false'). Any other "
        "value is refused so that it cannot switch anything on by accident",
    )


def number(
    field: str,
    value: Any,
    *,
    default: float | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    example: str = "",
    error: FieldError = IbkrValidationError,
) -> float | None:
    """``value`` as a finite float within the bounds (``default`` for None or ""). Booleans are
    refused (``True`` is 1 to Python, never a quantity a person meant)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    hint = f", e.g. {example}" if example else ""
    if isinstance(value, bool):
        raise error(field, f"{value!r} is not a number{hint}")
    try:
        parsed = float(value)
    except (TypeError, ValueError):
        raise error(field, f"{_shown(value)} is not a number{hint}") from None
    if not math.isfinite(parsed):
        raise error(field, f"{_shown(value)} is not a finite number{hint}")
    if positive and parsed <= 0:
        raise error(field, f"must be positive (got {parsed:g}){hint}")
    if (minimum is not None and parsed < minimum) or (maximum is not None and parsed > maximum):
        low = "" if minimum is None else f"{minimum:g}"
        high = "" if maximum is None else f"{maximum:g}"
        raise error(field, f"{_shown(value)} is out of range: give {low} to {high}{hint}")
    return parsed


def decimal(field: str, value: Any, *, error: FieldError = IbkrValidationError) -> Decimal:
    """``value`` as a finite Decimal: money and weights stay exact."""
    if isinstance(value, bool) or value is None:
        raise error(field, f"{value!r} is not a number")
    try:
        parsed = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise error(field, f"{_shown(value)} is not a number") from None
    if not parsed.is_finite():
        raise error(field, f"{value!r} is not a finite number")
    return parsed


def account_id(value: Any, field: str = "account_id", *, error: FieldError = IbkrValidationError) -> str:
    """An IBKR account id, checked so that it can go into a URL path: letters then digits."""
    text = str(value).strip() if value is not None else ""
    if not ACCOUNT_ID.fullmatch(text):
        raise error(field, f"{text[:80]!r} is not an IBKR account id: letters then digits, such as U1234567")
    return text


def path_segment(value: Any) -> str:
    """One URL path segment from a value: percent-encoded, so that ``/``, ``..`` or ``?`` in it
    can never change which endpoint the request reaches (a segment of only dots is encoded too:
    ``quote`` leaves dots alone, and a server resolves ``..`` before routing)."""
    encoded = quote(str(value), safe="")
    if encoded.strip(".") == "":
        encoded = encoded.replace(".", "%2E")
    return encoded


def url_with_port(url: str, port: Any, *, error: FieldError) -> str:
    """``url`` with the connection's ``port`` added when the URL names none (0 or empty: none)."""
    parts = urlsplit(url)
    if port in (None, "", 0, "0") or parts.port is not None:
        return url
    try:
        if isinstance(port, bool) or (isinstance(port, float) and not port.is_integer()):
            raise ValueError(port)
        parsed = int(port)
    except (TypeError, ValueError, OverflowError):  # int(inf) overflows (found by the fuzz test)
        raise error("port", f"{port!r} is not a port number") from None
    if not 0 < parsed < 65536:
        raise error("port", f"{port!r} is not a port number (1-65535)")
    return parts._replace(netloc=f"{parts.netloc}:{parsed}").geturl()


def base_url(value: str | None, port: Any, *, error: FieldError) -> str:
    """The API base URL (connection ``host``: a URL or a bare host name such as
    ``api.ibkr.com``) without trailing slashes or API suffixes; the connection's ``port`` is
    added when the host names none."""
    url = (value or DEFAULT_BASE_URL).strip().rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    try:
        parts = urlsplit(url)
        ok = parts.scheme in {"http", "https"} and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        ok = False
    if not ok:
        raise error("host", f"{value!r} is not an http(s) URL; use e.g. {DEFAULT_BASE_URL}")
    url = url_with_port(url, port, error=error)
    for suffix in ("/v1/api", "/v1/portal"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


def verify(value: Any, *, error: FieldError) -> bool | str:
    """The ``verify`` setting: a boolean (TLS verification, on by default) or a CA bundle path."""
    if value is None or value == "" or isinstance(value, bool):
        return True if value in (None, "") else bool(value)
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if not Path(text).expanduser().is_file():
        raise error(
            "verify", f"CA bundle {text!r} does not exist; give true, false or the path of a PEM CA bundle"
        )
    return str(Path(text).expanduser())


def redacted_url(url: str) -> str:
    """``url`` without its password (``redis://user:***@host:6379/1``), for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        port = f":{parts.port}" if parts.port else ""
        return parts._replace(netloc=f"{parts.username or ''}:***@{parts.hostname or ''}{port}").geturl()
    except ValueError:
        return "<a URL that cannot be parsed>"


def with_current_names(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with the old key-field names read under the current ones (a current name
    wins when both are set)."""
    current = {k: v for k, v in values.items() if k not in RENAMED_FIELDS}
    for old, new in RENAMED_FIELDS.items():
        if current.get(new) in (None, "") and values.get(old) not in (None, ""):
            current[new] = values[old]
    return current
