"""HTTP transport: one ``requests.Session``, TLS settings, and IBKR error bodies -> typed errors.

Every HTTP exchange of the provider goes through :meth:`HttpTransport.send`: the Web API's auth
steps and endpoints, the OAuth 1.0a consent calls and the Flex Web Service (``raw=True``: its
answers are XML). So timeouts, TLS verification, bounded retries, the User-Agent and the error
mapping are the same everywhere, and a network failure is always an
:class:`~ibkr_provider.client.errors.IbkrConnectionError` (retried), never an auth error.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from ibkr_provider import __version__
from ibkr_provider.client.errors import (
    IbkrAuthError,
    IbkrCompetingSessionError,
    IbkrConnectionError,
    IbkrError,
    IbkrErrorCode,
    IbkrRateLimitError,
    IbkrRequestError,
    IbkrResponseError,
    IbkrSessionError,
)
from ibkr_provider.client.http.retries import RetryPolicy, call_with_retries

log = logging.getLogger(__name__)

#: IBKR asks for a User-Agent naming the technology and its version ("Examples: Java/1.8,
#: Python/3.4.1", Flex Web Service guide); the provider and its version follow.
USER_AGENT = f"Python/{platform.python_version()} airflow-provider-ibkr/{__version__}"

#: IBKR error texts that mean "the session, not the request, is the problem": "no bridge" (no
#: brokerage session: ibind issues #44, #104), "not authenticated" (ibeam issue #254), "Please
#: query /accounts first" (the pre-flight: ibind issue #1), "no session" (the gateway's).
#: Matched case-insensitively as substrings.
SESSION_ERROR_MARKERS: Mapping[str, IbkrErrorCode] = {
    "no bridge": IbkrErrorCode.NO_BRIDGE,
    "not authenticated": IbkrErrorCode.NOT_AUTHENTICATED,
    "please query /accounts first": IbkrErrorCode.ACCOUNTS_PREFLIGHT,
    "no session": IbkrErrorCode.NO_SESSION,
}


def error_text(body: Any, fallback: str) -> str:
    """IBKR's error message from a decoded body (``error``, OAuth ``error_description``,
    problem+json ``detail``/``title``), else a short excerpt of the raw text."""
    if isinstance(body, Mapping):
        for key in ("error_description", "error", "detail", "title", "message"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return fallback.strip()[:300]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds (the HTTP-date form is ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from_response(
    response: requests.Response, endpoint: str, *, auth_hint: str | None = None
) -> IbkrError:
    """Map a non-2xx answer to the exception a caller reacts to.

    ``auth_hint`` is given for the login steps (token, SSO session), where 400/401/403 mean the
    credentials were refused, not that a session expired; it says which fields to check.
    """
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    text = error_text(body, response.text or response.reason or "")
    kwargs: dict[str, Any] = {"status": status, "endpoint": endpoint, "ibkr_error": text}
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return IbkrRateLimitError(
            f"IBKR rate limit hit: {text or 'Too Many Requests'}", retry_after=retry_after, **kwargs
        )
    if auth_hint is not None and status in (400, 401, 403):
        code = body.get("error") if isinstance(body, Mapping) and isinstance(body.get("error"), str) else None
        return IbkrAuthError(
            f"IBKR refused the credentials: {text}",
            code=IbkrErrorCode.AUTH,
            ibkr_code=code,
            hint=auth_hint,
            **kwargs,
        )
    lowered = text.lower()
    if "competing" in lowered:
        return IbkrCompetingSessionError(
            f"another login for this IBKR username holds the brokerage session: {text}",
            code=IbkrErrorCode.COMPETING,
            **kwargs,
        )
    for marker, code in SESSION_ERROR_MARKERS.items():
        if marker in lowered:
            return IbkrSessionError(f"IBKR session not usable: {text}", code=code, **kwargs)
    if status == 410:
        # OAuth 1.0a: the live session token is no longer valid; a new one is needed.
        return IbkrSessionError(
            f"IBKR says the session token is gone: {text}", code=IbkrErrorCode.SESSION_GONE, **kwargs
        )
    if status == 401:
        return IbkrSessionError(
            f"IBKR session not authenticated: {text}", code=IbkrErrorCode.NOT_AUTHENTICATED, **kwargs
        )
    return IbkrRequestError(f"IBKR request failed: {text}", **kwargs)


class HttpTransport:
    """Sends HTTP requests with the configured TLS verification, timeout and retry policy."""

    def __init__(
        self,
        *,
        verify: bool | str,
        timeout: float,
        retry_policy: RetryPolicy | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        self._verify = verify
        self._timeout = timeout
        self._retry_policy = retry_policy or RetryPolicy()
        self._sleep = sleep

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> HttpTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: Any = None,
        auth_hint: str | None = None,
        idempotent: bool = True,
        prepare: Callable[[], Mapping[str, str]] | None = None,
        raw: bool = False,
    ) -> Any:
        """Send a request, retrying transient failures, and return the decoded JSON body
        (``None`` for an empty body), or with ``raw`` the body's bytes as sent.

        ``prepare`` runs before every attempt and returns headers for it: the pacer takes its
        slot there (so each retry counts against IBKR's limits like any request), and OAuth 1.0a
        signs each attempt with a fresh nonce and timestamp. Raises a subclass of
        :class:`IbkrError` for every failure; never returns an error body.
        """

        def attempt() -> Any:
            merged = {**(headers or {}), **(prepare() if prepare is not None else {})}
            return self._send_once(
                method,
                url,
                headers=merged,
                params=params,
                json_body=json_body,
                data=data,
                auth_hint=auth_hint,
                raw=raw,
            )

        return call_with_retries(
            attempt,
            policy=self._retry_policy,
            idempotent=idempotent,
            describe=f"{method} {urlsplit(url).path}",
            sleep=self._sleep,
        )

    def _send_once(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None,
        params: Mapping[str, Any] | None,
        json_body: Any,
        data: Any,
        auth_hint: str | None,
        raw: bool,
    ) -> Any:
        endpoint = urlsplit(url).path
        try:
            response = self._session.request(
                method,
                url,
                headers=dict(headers or {}),
                params=params,
                json=json_body,
                data=data,
                timeout=self._timeout,
                verify=self._verify,
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise IbkrConnectionError(
                f"no answer from IBKR within {self._timeout:g} s ({type(exc).__name__})",
                endpoint=endpoint,
                code=IbkrErrorCode.TIMEOUT,
            ) from None
        except requests.exceptions.SSLError:
            raise IbkrConnectionError(
                "TLS verification failed; for a gateway with a self-signed certificate set the "
                "connection's verify field to its CA bundle path",
                endpoint=endpoint,
                code=IbkrErrorCode.TLS,
            ) from None
        except requests.RequestException as exc:
            raise IbkrConnectionError(
                f"could not reach IBKR ({type(exc).__name__})",
                endpoint=endpoint,
                code=IbkrErrorCode.CONNECTION,
            ) from None
        log.debug("%s %s -> %s", method, endpoint, response.status_code)
        if response.status_code >= 300:
            raise error_from_response(response, endpoint, auth_hint=auth_hint)
        if raw:
            return response.content
        if not response.content:
            return None
        try:
            return response.json()
        except (ValueError, json.JSONDecodeError):
            raise IbkrResponseError(
                "IBKR answered with a body that is not JSON", status=response.status_code, endpoint=endpoint
            ) from None
