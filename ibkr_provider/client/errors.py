"""The provider's exception tree.

One root, :class:`IbkrError`, so callers can catch everything from IBKR in one clause, and one
distinct type per failure a caller reacts to differently (fix the credentials, re-open the
session, slow down, fix the request, inspect the order). Each error carries the HTTP status,
the endpoint and IBKR's own error text, so nobody has to string-match messages.

Error text never includes tokens, assertions or keys: messages are built from the endpoint
path and IBKR's ``error`` field only.
"""

from __future__ import annotations


class IbkrError(Exception):
    """Base class of every error raised by the IBKR client.

    :param message: human-readable explanation, naming what to fix where possible.
    :param status: HTTP status code, when the error came from an HTTP answer.
    :param endpoint: request path (without host or query), e.g. ``/v1/api/iserver/accounts``.
    :param ibkr_error: IBKR's own error text from the response body, verbatim.
    :param code: a short machine-readable code (IBKR's ``error`` code or ours).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        endpoint: str | None = None,
        ibkr_error: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.endpoint = endpoint
        self.ibkr_error = ibkr_error
        self.code = code

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None or self.endpoint:
            where = " ".join(p for p in (str(self.status) if self.status else "", self.endpoint or "") if p)
            parts.append(f"[{where}]")
        return " ".join(parts)


class IbkrConfigError(IbkrError):
    """The connection or call is misconfigured; the message names the field and the fix.

    Raised before any request is sent.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", code="config")
        self.field = field


class IbkrAuthError(IbkrError):
    """IBKR refused the credentials: the client assertion, the access token or the SSO JWT."""


class IbkrSessionError(IbkrError):
    """The session is not usable: not authenticated, no brokerage session ("no bridge"),
    or the IBKR pre-flight ("Please query /accounts first") was not satisfied."""


class IbkrCompetingSessionError(IbkrSessionError):
    """Another login for the same IBKR username (TWS, IBKR Mobile, Client Portal) holds the
    brokerage session. IBKR allows one brokerage session per username."""


class IbkrRateLimitError(IbkrError):
    """IBKR answered 429 Too Many Requests (its pacing limits or its penalty box)."""

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
            message, status=status, endpoint=endpoint, ibkr_error=ibkr_error, code="rate_limited"
        )
        self.retry_after = retry_after


class IbkrRequestError(IbkrError):
    """IBKR rejected or failed a request (4xx/5xx other than auth, session and pacing)."""


class IbkrConnectionError(IbkrRequestError):
    """The request never got an HTTP answer: DNS, refused or dropped connection, TLS, timeout."""


class IbkrResponseError(IbkrRequestError):
    """IBKR answered 2xx with a body the client cannot interpret (not JSON, wrong shape)."""


class IbkrOrderError(IbkrError):
    """An order was rejected, or a confirmation prompt could not be answered safely."""
