"""The provider's exception tree, and which errors a retry can fix.

One root, :class:`IbkrError`, so callers can catch everything from IBKR in one clause, and one
distinct type per failure a caller reacts to differently::

    IbkrError
    ├── IbkrConfigError            a connection field is wrong (.field); nothing was sent
    ├── IbkrValidationError        a call argument is wrong (.field); nothing was sent
    ├── IbkrAuthError              IBKR refused the credentials (key, kid, client id, token)
    ├── IbkrSessionError           no usable session this time (not authenticated, no bridge)
    │   └── IbkrCompetingSessionError   another login holds the username's brokerage session
    ├── IbkrRateLimitError         429 (IBKR's pacing or its penalty box); .retry_after
    ├── IbkrRequestError           any other rejected request (.status)
    │   ├── IbkrConnectionError    no HTTP answer: refused, dropped, timeout, TLS
    │   ├── IbkrResponseError      a 2xx answer the client cannot interpret
    │   └── IbkrNotFoundError      an unknown symbol, account or order
    └── IbkrOrderError             IBKR rejected an order, or a prompt could not be answered
        └── IbkrOrderRefusedError  the provider refused to send it (live guard, caps, prompts)

Each error carries the HTTP status, the endpoint, IBKR's own error text (``ibkr_error``) and
code (``ibkr_code``, e.g. ``invalid_client`` or Flex ``1015``), and the provider's own code
(``code``, an :class:`IbkrErrorCode`), so nobody has to string-match messages.

:attr:`IbkrError.permanent` says whether repeating the same work could succeed: a wrong field,
refused credentials, an unknown symbol or a refused order cannot; no answer, a timeout, a 429
after the client's own retries, a 5xx, a session that could not be recovered this time or a
competing login that may end can. Where IBKR's answer is ambiguous (a 2xx body of the wrong
shape, an unmapped status) the error counts as transient. The Airflow side turns permanent
errors into a failure without retries (:mod:`ibkr_provider.failures`).

Error text never includes tokens, assertions or keys: messages are built from the endpoint
path and IBKR's ``error`` field only.
"""

from __future__ import annotations

import enum

#: What a user does when their OAuth 2.0 grant is refused (code ``consent_required``).
CONSENT_AGAIN = "connect it again on Admin -> Connect IBKR"

#: 4xx statuses that a later identical request may pass: timeout, conflict, too early, 429.
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 409, 425, 429})


class IbkrErrorCode(str, enum.Enum):
    """The provider's own error codes (IBKR's codes travel in ``ibkr_code``)."""

    CONFIG = "config"
    VALIDATION = "validation"
    AUTH = "auth"
    #: a user's OAuth 2.0 grant was refused (revoked, reused, expired): only a new consent fixes it
    CONSENT_REQUIRED = "consent_required"
    TIMEOUT = "timeout"
    TLS = "tls"
    CONNECTION = "connection"
    RATE_LIMITED = "rate_limited"
    NOT_AUTHENTICATED = "not_authenticated"
    NO_BRIDGE = "no_bridge"
    NO_SESSION = "no_session"
    SESSION_GONE = "session_gone"
    ACCOUNTS_PREFLIGHT = "accounts_preflight"
    COMPETING = "competing"
    LOCK_TIMEOUT = "lock_timeout"
    SESSION_CACHE = "session_cache"
    NOT_FOUND = "not_found"
    INCOMPLETE_SNAPSHOT = "incomplete_snapshot"
    REJECTED = "rejected"
    PROMPT_DECLINED = "prompt_declined"
    TOO_MANY_PROMPTS = "too_many_prompts"
    LIVE_NOT_ALLOWED = "live_not_allowed"
    CAP_EXCEEDED = "cap_exceeded"
    CAP_UNCHECKABLE = "cap_uncheckable"
    PLAN_UNAFFORDABLE = "plan_unaffordable"
    #: The approved plan no longer holds: another plan, or the market moved beyond max_price_drift.
    PLAN_CHANGED = "plan_changed"
    PRICE_MOVED = "price_moved"
    #: An order's fills are not all listed by /iserver/account/trades yet (transient).
    FILLS_NOT_LISTED = "fills_not_listed"
    FLEX = "flex"
    FLEX_NOT_READY = "flex_not_ready"
    #: The client was closed while a request waited for its pacing slot; nothing was sent.
    CLIENT_CLOSED = "client_closed"

    def __str__(self) -> str:
        return self.value


class IbkrError(Exception):
    """Base class of every error raised by the IBKR client.

    :param message: human-readable explanation, naming what to fix where possible.
    :param status: HTTP status code, when the error came from an HTTP answer.
    :param endpoint: request path (without host or query), e.g. ``/v1/api/iserver/accounts``.
    :param ibkr_error: IBKR's own error text from the response body, verbatim.
    :param code: the provider's own code for the failure.
    :param ibkr_code: IBKR's code for it (OAuth ``error``, a Flex error code), verbatim.
    :param hint: where to look to fix it (a connection field, an IBKR portal page).
    :param permanent: override the class's judgement of whether a retry can help.
    """

    #: Whether a retry of the same work cannot succeed (see the module docstring).
    default_permanent = False
    #: Where to look when nothing more specific is known.
    default_hint = "IBKR's status and the task log above"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        endpoint: str | None = None,
        ibkr_error: str | None = None,
        code: IbkrErrorCode | None = None,
        ibkr_code: str | None = None,
        hint: str | None = None,
        permanent: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.endpoint = endpoint
        self.ibkr_error = ibkr_error
        self.code = code
        self.ibkr_code = ibkr_code
        self.hint = hint or self.default_hint
        self._permanent = permanent

    @property
    def permanent(self) -> bool:
        """True when repeating the same work cannot succeed; the task should fail at once."""
        return self.default_permanent if self._permanent is None else self._permanent

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None or self.endpoint:
            where = " ".join(p for p in (str(self.status) if self.status else "", self.endpoint or "") if p)
            parts.append(f"[{where}]")
        return " ".join(parts)


class IbkrConfigError(IbkrError):
    """A connection field is missing or malformed; the message names the field and the fix.

    Raised before any request is sent.
    """

    default_permanent = True

    def __init__(self, field: str, message: str) -> None:
        super().__init__(
            f"{field}: {message}", code=IbkrErrorCode.CONFIG, hint=f"the connection field '{field}'"
        )
        self.field = field


class IbkrValidationError(IbkrError):
    """A call or task argument is wrong (an order ticket field, a date range, a symbol list).

    Raised before any request is sent; the message names the argument and the fix.
    """

    default_permanent = True

    def __init__(self, field: str, message: str) -> None:
        super().__init__(
            f"{field}: {message}", code=IbkrErrorCode.VALIDATION, hint=f"the task argument '{field}'"
        )
        self.field = field


class IbkrAuthError(IbkrError):
    """IBKR refused the credentials: the client assertion, the access token, the SSO JWT or the
    Flex token. Repeating a refused login is what gets an account's API access locked, so it
    is never retried."""

    default_permanent = True
    default_hint = "the connection's credentials and what IBKR registered for them"


class IbkrSessionError(IbkrError):
    """The session is not usable: not authenticated, no brokerage session ("no bridge"),
    or the IBKR pre-flight ("Please query /accounts first") was not satisfied, and the one
    recovery the client attempts did not repair it. IBKR's nightly reset causes these, so a
    later try may pass."""

    default_hint = "IBKR's status (nightly maintenance around 01:00 local) and the session log above"


class IbkrCompetingSessionError(IbkrSessionError):
    """Another login for the same IBKR username (TWS, IBKR Mobile, Client Portal) holds the
    brokerage session. IBKR allows one brokerage session per username; that login may end."""

    default_hint = "other logins of this IBKR username (TWS, IBKR Mobile, Client Portal)"


class IbkrRateLimitError(IbkrError):
    """IBKR answered 429 Too Many Requests (its pacing limits or its penalty box)."""

    default_hint = "the connection's rate_limit and how many tasks share this IBKR username"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = 429,
        endpoint: str | None = None,
        ibkr_error: str | None = None,
    ) -> None:
        super().__init__(
            message,
            status=status,
            endpoint=endpoint,
            ibkr_error=ibkr_error,
            code=IbkrErrorCode.RATE_LIMITED,
        )
        self.retry_after = retry_after


class IbkrRequestError(IbkrError):
    """IBKR rejected or failed a request (4xx/5xx other than auth, session and pacing).

    A 4xx means IBKR refused this request as it is (permanent); a 5xx or no status may pass
    later (transient).
    """

    default_hint = "the request's arguments and IBKR's error text"

    @property
    def permanent(self) -> bool:
        if self._permanent is not None:
            return self._permanent
        return (
            self.status is not None
            and 400 <= self.status < 500
            and (self.status not in _RETRYABLE_CLIENT_STATUSES)
        )


class IbkrConnectionError(IbkrRequestError):
    """The request never got an HTTP answer: DNS, refused or dropped connection, TLS, timeout.

    Transient, except a failed TLS verification: a retry meets the same certificate.
    """

    default_hint = "that the API host is reachable from the worker, and its TLS settings (verify)"

    @property
    def permanent(self) -> bool:
        if self._permanent is not None:
            return self._permanent
        return self.code is IbkrErrorCode.TLS


class IbkrResponseError(IbkrRequestError):
    """IBKR answered 2xx with a body the client cannot interpret (not JSON, wrong shape).

    Ambiguous (a proxy's error page, an IBKR hiccup), so it counts as transient.
    """

    @property
    def permanent(self) -> bool:
        return bool(self._permanent)


class IbkrNotFoundError(IbkrRequestError):
    """IBKR knows no such symbol, account or order."""

    default_hint = "the symbol, account or order id the task names"

    @property
    def permanent(self) -> bool:
        return True if self._permanent is None else self._permanent


class IbkrOrderError(IbkrError):
    """IBKR rejected an order (its what-if or its placement answered with an error), or a
    confirmation prompt could not be answered safely. Resubmitting the same order meets the
    same answer, so it is permanent."""

    default_permanent = True
    default_hint = "the order's fields and IBKR's rejection text"


class IbkrOrderRefusedError(IbkrOrderError):
    """The provider refused to send an order for safety: a live account without ``allow_live``,
    a cap exceeded or not checkable, a confirmation prompt outside the allow-list."""

    default_hint = "the task's safety arguments (allow_live, max_quantity, max_notional, allowed_message_ids)"


def is_permanent(exc: BaseException) -> bool:
    """Whether ``exc`` is an IBKR failure that a retry cannot fix (see the module docstring)."""
    return isinstance(exc, IbkrError) and exc.permanent
