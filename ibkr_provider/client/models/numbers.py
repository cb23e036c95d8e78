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
