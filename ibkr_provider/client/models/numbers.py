"""IBKR's numbers, as :class:`~decimal.Decimal`.

IBKR sends amounts and prices in several shapes: JSON numbers, numeric strings with thousands
separators (``"1,300"``), money with a currency (``"1,234.56 USD"`` in what-if answers), and
last prices prefixed ``C`` (prior close) or ``H`` (halted) in market-data snapshots. One parser
reads them all; money and prices stay exact (ibflex does the same for the same data).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from ibkr_provider.client.errors import IbkrResponseError

_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*)?\.?\d+(?:[eE][-+]?\d+)?")


def to_decimal(value: Any) -> Decimal | None:
    """The number in ``value``, or None when there is none (None, "", text without digits)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    text = str(value).strip()
    if text[:1] in ("C", "H"):  # snapshot last price: prior close / halted
        text = text[1:]
    match = _NUMBER.search(text)
    if match is None:
        return None
    try:
        return Decimal(match.group(0).replace(",", ""))
    except InvalidOperation:
        return None


#: What IBKR puts where a figure is not known; anything else that is not a number is an error.
_NOT_KNOWN = frozenset({"", "-", "--", "n/a", "na", "none", "null"})
_WHOLE_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*)?\.?\d+(?:[eE][-+]?\d+)?(?:\s*[A-Z]{3})?%?")


def amount_of(value: Any) -> Decimal | None:
    """A figure of an account or order answer, strictly: a finite number, numeric text in one
    of IBKR's shapes (:func:`to_decimal`'s), or None for nothing or IBKR's "not known" marks.
    Anything else (an object, a list, a flag, text that is no number, NaN) is an answer the
    client cannot read: a wrong figure must fail the task, never become a silent None or a
    digit fished out of some other value."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise IbkrResponseError(f"a figure is a {type(value).__name__}, not a number")
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _NOT_KNOWN:
            return None
        if not _WHOLE_NUMBER.fullmatch(text[1:] if text[:1] in ("C", "H") else text):
            raise IbkrResponseError(f"a figure reads {text[:40]!r}, not a number")
    number = to_decimal(value)
    if number is None or not number.is_finite():
        raise IbkrResponseError(f"a figure reads {str(value)[:40]!r}, not a finite number")
    return number


def quantity_of(value: Any) -> float | None:
    """A quantity (shares, contracts) of an account or order answer, read like :func:`amount_of`."""
    number = amount_of(value)
    return float(number) if number is not None else None


def to_float(value: Any) -> float | None:
    """A quantity (shares, contracts) as float, read like :func:`to_decimal`."""
    number = to_decimal(value)
    return float(number) if number is not None else None


def as_json_number(value: Decimal | None) -> float | None:
    """A Decimal for JSON (XCom, summaries): a float, or None."""
    return float(value) if value is not None else None


def json_number(value: Decimal) -> int | float:
    """A Decimal for a JSON body IBKR reads as a number: an int when whole, else the float whose
    shortest text is the Decimal's own (``Decimal("0.1")`` is sent as ``0.1``)."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


_CENT = Decimal("0.01")
_BASIS_POINT = Decimal("0.0001")


def money(value: Decimal) -> Decimal:
    """An amount to the cent (half-even, as accountants round)."""
    return value.quantize(_CENT)


def fraction(value: Decimal) -> Decimal:
    """A weight or ratio to four places (a basis point)."""
    return value.quantize(_BASIS_POINT)


def as_text(value: Decimal | None) -> str | None:
    """A Decimal for JSON without losing digits (XCom, summaries): its plain string, or None."""
    return None if value is None else format(value, "f")
