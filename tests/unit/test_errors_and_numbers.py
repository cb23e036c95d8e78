"""Which errors a retry can fix, and IBKR's number strings."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ibkr_provider.client.errors import (
    IbkrAuthError,
    IbkrCompetingSessionError,
    IbkrConfigError,
    IbkrConnectionError,
    IbkrError,
    IbkrErrorCode,
    IbkrNotFoundError,
    IbkrOrderError,
    IbkrOrderRefusedError,
    IbkrRateLimitError,
    IbkrRequestError,
    IbkrResponseError,
    IbkrSessionError,
    IbkrValidationError,
    is_permanent,
)
from ibkr_provider.client.models.numbers import to_decimal, to_float

PERMANENT = [
    IbkrConfigError("private_key", "not a key"),
    IbkrValidationError("side", "HOLD is not a side"),
    IbkrAuthError("invalid_client", status=401),
    IbkrRequestError("accountId is not valid", status=400),
    IbkrRequestError("not found", status=404),
    IbkrConnectionError("TLS verification failed", code=IbkrErrorCode.TLS),
    IbkrNotFoundError("no such symbol"),
    IbkrOrderError("rejected"),
    IbkrOrderRefusedError("live account"),
    IbkrRequestError("Flex 1014 Query is invalid", code=IbkrErrorCode.FLEX, permanent=True),
]
TRANSIENT = [
    IbkrSessionError("no bridge", status=400, code=IbkrErrorCode.NO_BRIDGE),
    IbkrCompetingSessionError("another login"),
    IbkrRateLimitError("429"),
    IbkrRequestError("Service Unavailable", status=503),
    IbkrRequestError("Internal error", status=500),
    IbkrRequestError("Request Timeout", status=408),
    IbkrRequestError("no status"),
    IbkrConnectionError("timeout", code=IbkrErrorCode.TIMEOUT),
    IbkrResponseError("not JSON", status=200),
    IbkrRequestError("Flex report not ready", code=IbkrErrorCode.FLEX_NOT_READY),
]


@pytest.mark.parametrize("error", PERMANENT, ids=repr)
def test_permanent_errors(error: IbkrError) -> None:
    assert is_permanent(error) and error.hint


@pytest.mark.parametrize("error", TRANSIENT, ids=repr)
def test_transient_errors(error: IbkrError) -> None:
    assert not is_permanent(error)


def test_only_ibkr_errors_are_judged_and_codes_are_an_enum() -> None:
    assert not is_permanent(ValueError("x"))
    assert IbkrConfigError("ip", "missing").code is IbkrErrorCode.CONFIG
    assert IbkrErrorCode.COMPETING == "competing" and str(IbkrErrorCode.TLS) == "tls"


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("1,300", Decimal(1300)),
        ("C168.42", Decimal("168.42")),
        ("H5", Decimal(5)),
        ("1,234.56 USD", Decimal("1234.56")),
        ("-0.5", Decimal("-0.5")),
        (7, Decimal(7)),
        (0.1, Decimal("0.1")),
        ("", None),
        (None, None),
        ("n/a", None),
        (True, None),
    ],
)
def test_ibkr_numbers(text: object, number: Decimal | None) -> None:
    assert to_decimal(text) == number


def test_quantities_are_floats() -> None:
    assert to_float("1,300") == 1300.0 and to_float(None) is None
