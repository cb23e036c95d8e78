"""IBKR's Flex Web Service error codes, and what the client does about each.

The table is ibflex's (IBKR publishes the codes in its Flex Web Service guide) plus 1001, which
IBKR answers under load. The reaction is part of the code's meaning:

- ``POLL`` (1019 "Statement generation in progress"): ask again every ``poll_interval`` seconds;
- ``THROTTLED`` (1018 "Too many requests"): back off, doubling up to ``max_backoff``;
- ``RETRY`` (1001, 1004-1009, 1021: "not ready", "server busy", "try again shortly"): the same
  backoff;
- ``TOKEN`` (1012 expired, 1015 invalid): fail at once, asking for a new Flex token;
- ``FAIL``: anything else (and any code not in the table) fails at once with IBKR's text.
"""

from __future__ import annotations

from enum import Enum, IntEnum


class FlexAction(str, Enum):
    POLL = "poll"
    THROTTLED = "throttled"
    RETRY = "retry"
    TOKEN = "token"
    FAIL = "fail"

    @property
    def waits(self) -> bool:
        """Whether the client asks again (within ``max_wait``) instead of failing."""
        return self in (FlexAction.POLL, FlexAction.THROTTLED, FlexAction.RETRY)


class FlexCode(IntEnum):
    """A Flex error code with IBKR's text (``message``) and the client's reaction (``action``)."""

    message: str
    action: FlexAction

    def __new__(cls, value: int, message: str, action: FlexAction) -> FlexCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.message = message
        member.action = action
        return member

    NOT_GENERATED = (
        1001,
        "Statement could not be generated at this time. Please try again shortly.",
        FlexAction.RETRY,
    )
    NOT_AVAILABLE = 1003, "Statement is not available.", FlexAction.FAIL
    INCOMPLETE = 1004, "Statement is incomplete at this time. Please try again shortly.", FlexAction.RETRY
    SETTLEMENT_NOT_READY = (
        1005,
        "Settlement data is not ready at this time. Please try again shortly.",
        FlexAction.RETRY,
    )
    FIFO_NOT_READY = (
        1006,
        "FIFO P/L data is not ready at this time. Please try again shortly.",
        FlexAction.RETRY,
    )
    MTM_NOT_READY = (
        1007,
        "MTM P/L data is not ready at this time. Please try again shortly.",
        FlexAction.RETRY,
    )
    MTM_FIFO_NOT_READY = (
        1008,
        "MTM and FIFO P/L data is not ready at this time. Please try again shortly.",
        FlexAction.RETRY,
    )
    HEAVY_LOAD = (
        1009,
        "The server is under heavy load. Statement could not be generated at this time.",
        FlexAction.RETRY,
    )
    LEGACY_QUERY = (
        1010,
        "Legacy Flex Queries are no longer supported. Please convert over to Activity Flex.",
        FlexAction.FAIL,
    )
    ACCOUNT_INACTIVE = 1011, "Service account is inactive.", FlexAction.FAIL
    TOKEN_EXPIRED = 1012, "Token has expired.", FlexAction.TOKEN
    IP_RESTRICTION = 1013, "IP restriction.", FlexAction.FAIL
    QUERY_INVALID = 1014, "Query is invalid.", FlexAction.FAIL
    TOKEN_INVALID = 1015, "Token is invalid.", FlexAction.TOKEN
    ACCOUNT_INVALID = 1016, "Account in invalid.", FlexAction.FAIL
    REFERENCE_INVALID = 1017, "Reference code is invalid.", FlexAction.FAIL
    TOO_MANY_REQUESTS = (
        1018,
        "Too many requests have been made from this token. Please try again shortly.",
        FlexAction.THROTTLED,
    )
    IN_PROGRESS = 1019, "Statement generation in progress. Please try again shortly.", FlexAction.POLL
    INVALID_REQUEST = 1020, "Invalid request or unable to validate request.", FlexAction.FAIL
    NOT_RETRIEVED = (
        1021,
        "Statement could not be retrieved at this time. Please try again shortly.",
        FlexAction.RETRY,
    )


_BY_VALUE = {int(member): member for member in FlexCode}


def flex_code(code: int) -> FlexCode | None:
    """The table's entry for ``code``, or None for a code IBKR added since."""
    return _BY_VALUE.get(code)


def action_of(code: int) -> FlexAction:
    """The reaction to ``code``; an unknown code fails (nothing is waited for on a guess)."""
    known = flex_code(code)
    return known.action if known is not None else FlexAction.FAIL


def message_of(code: int) -> str:
    known = flex_code(code)
    return known.message if known is not None else "unknown error"
