"""Every model parser, fed any JSON value (hypothesis): a typed model or an
:class:`IbkrResponseError`, never ``KeyError``, ``TypeError``, ``ValueError`` or anything else
(issue 26: IBKR's answers are not always well-formed)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import types
import typing
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ibkr_provider.client.errors import IbkrError
from ibkr_provider.client.models.executions import Execution
from ibkr_provider.client.models.orders import LiveOrder, OrderState, OrderStatus
from ibkr_provider.client.models.portfolio import Account, AccountSummary, Ledger, PnlRow, Position
from ibkr_provider.client.models.session import BrokerageAccounts, BrokerageSessionStatus, TickleResult
from ibkr_provider.client.models.stream import parse_message
from ibkr_provider.client.models.whatif import WhatIf

#: Field names the parsers read, so generated objects reach past the first check.
KEYS = [
    "accountId",
    "id",
    "type",
    "currency",
    "desc",
    "displayName",
    "isPaper",
    "accounts",
    "selectedAccount",
    "netliquidation",
    "totalcashvalue",
    "amount",
    "value",
    "isNull",
    "BASE",
    "USD",
    "cashbalance",
    "settledcash",
    "unrealizedpnl",
    "exchangerate",
    "conid",
    "contractDesc",
    "position",
    "mktPrice",
    "mktValue",
    "avgCost",
    "unrealizedPnl",
    "assetClass",
    "orderId",
    "order_id",
    "status",
    "order_status",
    "filledQuantity",
    "remainingQuantity",
    "avgPrice",
    "order_ref",
    "side",
    "ticker",
    "symbol",
    "size",
    "price",
    "execution_id",
    "commission",
    "trade_time_r",
    "trade_time",
    "amount",
    "equity",
    "initial",
    "maintenance",
    "change",
    "after",
    "current",
    "warn",
    "error",
    "authenticated",
    "competing",
    "connected",
    "fail",
    "message",
    "session",
    "userId",
    "iserver",
    "authStatus",
    "ssoExpires",
    "upnl",
    "dpl",
    "nl",
    "upl",
    "el",
    "mv",
    "rowType",
    "acctId",
    "topic",
    "args",
    "cashQuantity",
    "totalSize",
    "cOID",
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["Filled", "Submitted", "1,234.50", "-", "", "nan", "1e400", "BUY", "SELL", "DU1"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=25,
)

PARSERS: dict[str, Callable[[Any], Any]] = {
    "Account": Account.from_json,
    "AccountSummary": lambda v: AccountSummary.from_json("DU1234567", v),
    "PnlRow": PnlRow.from_json,
    "Ledger": lambda v: Ledger.from_json("DU1234567", v),
    "Position": Position.from_json,
    "BrokerageSessionStatus": BrokerageSessionStatus.from_json,
    "TickleResult": TickleResult.from_json,
    "BrokerageAccounts": BrokerageAccounts.from_json,
    "Execution": Execution.from_json,
    "WhatIf": WhatIf.from_json,
    "LiveOrder": LiveOrder.from_json,
    "OrderStatus": lambda v: OrderStatus.from_json("1000001", v),
    "OrderState": OrderState.parse,
}


_SIMPLE = {str, int, float, bool, Decimal, type(None)}


def assert_typed(value: Any, where: str = "") -> None:
    """Every field of a parsed model holds what its annotation says (a wrong type read into a
    typed model fails later, far from IBKR's answer): checked for the plain types, recursively
    through nested models and tuples."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert_typed(item, f"{where}[{key!r}]")
        return
    if isinstance(value, tuple):
        for index, item in enumerate(value):
            assert_typed(item, f"{where}[{index}]")
        return
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return
    hints = typing.get_type_hints(type(value))
    for field in dataclasses.fields(value):
        got = getattr(value, field.name)
        hint = hints[field.name]
        allowed = (
            set(typing.get_args(hint))
            if typing.get_origin(hint) in (typing.Union, types.UnionType)
            else {hint}
        )
        simple = {a for a in allowed if a in _SIMPLE}
        if simple and simple == allowed:
            ok = isinstance(got, tuple(simple)) and not (isinstance(got, bool) and bool not in simple)
            assert ok, f"{type(value).__name__}{where}.{field.name} = {got!r} is not {hint}"
        assert_typed(got, f"{where}.{field.name}")


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(payload=JSON)
def test_a_parser_answers_a_model_or_a_typed_error(name: str, payload: Any) -> None:
    try:
        parsed = PARSERS[name](payload)
    except IbkrError:
        return
    assert_typed(parsed)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(text=st.text(max_size=200) | JSON.map(json.dumps))
def test_a_stream_message_parses_or_is_a_typed_error(text: str) -> None:
    with contextlib.suppress(IbkrError):
        parse_message(text)
