"""IBKR Flex Web Service: SendRequest, then GetStatement from the URL it returns (reference 8).

The Flex service has its own token (Client Portal, "Flex Web Service Configuration") and its
own error codes. Polling is code-aware and bounded:

- 1019 "Statement generation in progress": keep polling every ``poll_interval`` seconds;
- 1018 "Too many requests": back off (doubling, up to ``max_backoff``);
- 1001/1004-1009/1021 ("not ready", "server busy", "try again shortly"): retry after a pause;
- 1012 (token expired) and 1015 (token invalid): fail at once with a token message;
- anything else fails at once with IBKR's text.

Everything is bounded by ``max_wait`` seconds in total. The token travels as a query
parameter, so error messages name the endpoint path only, never the URL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NoReturn
from urllib.parse import urlsplit

import defusedxml.ElementTree as SafeET
import requests

from ibkr_provider import __version__
from ibkr_provider.client.errors import (
    IbkrAuthError,
    IbkrConnectionError,
    IbkrErrorCode,
    IbkrRequestError,
    IbkrResponseError,
)
from ibkr_provider.client.hosts import DEFAULT_FLEX_URL

log = logging.getLogger(__name__)

#: A query id no account has: SendRequest answers 1014 for it once the token is accepted.
PROBE_QUERY_ID = "0"
QUERY_INVALID = 1014
TOKEN_HINT = (
    "the Flex token (Client Portal > Settings > Flex Web Service) in the ibkr_flex connection's password"
)

#: IBKR's Flex error codes (ibflex's table plus 1001), with how this client reacts.
FLEX_ERRORS: Mapping[int, tuple[str, str]] = {
    1001: ("Statement could not be generated at this time. Please try again shortly.", "retry"),
    1003: ("Statement is not available.", "fail"),
    1004: ("Statement is incomplete at this time. Please try again shortly.", "retry"),
    1005: ("Settlement data is not ready at this time. Please try again shortly.", "retry"),
    1006: ("FIFO P/L data is not ready at this time. Please try again shortly.", "retry"),
    1007: ("MTM P/L data is not ready at this time. Please try again shortly.", "retry"),
    1008: ("MTM and FIFO P/L data is not ready at this time. Please try again shortly.", "retry"),
    1009: ("The server is under heavy load. Statement could not be generated at this time.", "retry"),
    1010: ("Legacy Flex Queries are no longer supported. Please convert over to Activity Flex.", "fail"),
    1011: ("Service account is inactive.", "fail"),
    1012: ("Token has expired.", "token"),
    1013: ("IP restriction.", "fail"),
    1014: ("Query is invalid.", "fail"),
    1015: ("Token is invalid.", "token"),
    1016: ("Account in invalid.", "fail"),
    1017: ("Reference code is invalid.", "fail"),
    1018: ("Too many requests have been made from this token. Please try again shortly.", "throttled"),
    1019: ("Statement generation in progress. Please try again shortly.", "poll"),
    1020: ("Invalid request or unable to validate request.", "fail"),
    1021: ("Statement could not be retrieved at this time. Please try again shortly.", "retry"),
}


@dataclass(frozen=True)
class FlexReport:
    """A fetched Flex report: the raw bytes as IBKR sent them, and its sections as rows."""

    reference_code: str
    content: bytes = field(repr=False)
    sections: Mapping[str, list[dict[str, str]]] = field(repr=False)
    polls: int

    def rows(self, section: str) -> list[dict[str, str]]:
        """Rows of a section such as ``Trades``, ``OpenPositions`` or ``CashReport``."""
        return self.sections.get(section, [])


def parse_flex_statement(content: bytes) -> dict[str, list[dict[str, str]]]:
    """Section name -> rows (the attributes of each child element) of a FlexQueryResponse."""
    root = SafeET.fromstring(content)
    if root.tag != "FlexQueryResponse":
        raise IbkrResponseError(f"a Flex report must be a FlexQueryResponse, got <{root.tag}>")
    sections: dict[str, list[dict[str, str]]] = {}
    for statement in root.iter("FlexStatement"):
        account = statement.get("accountId", "")
        for section in statement:
            rows = sections.setdefault(section.tag, [])
            rows.extend({"accountId": account, **child.attrib} for child in section)
    return sections


#: Hosts a Flex statement URL may name besides the configured one (IBKR serves Flex from
#: ndcdyn/gdcdyn.interactivebrokers.com).
IBKR_FLEX_HOST_SUFFIXES = (".interactivebrokers.com", ".ibkr.com")


class FlexClient:
    """Fetches Flex reports with one Flex token.

    :param base_url: the Flex Web Service root (``.../AccountManagement/FlexWebService``).
    :param token: the Flex token (a secret; never put in messages).
    """

    def __init__(
        self,
        *,
        token: str,
        base_url: str = DEFAULT_FLEX_URL,
        verify: bool | str = True,
        timeout: float = 30.0,
        poll_interval: float = 5.0,
        max_backoff: float = 60.0,
        max_wait: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._token = token
        self.base_url = base_url.rstrip("/")
        self._verify = verify
        self._timeout = timeout
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.max_wait = max_wait
        self._sleep = sleep
        self._http = requests.Session()
        # IBKR requires a User-Agent naming the technology and version.
        self._http.headers["User-Agent"] = f"Python/airflow-provider-ibkr-{__version__}"

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> FlexClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _get(self, url: str, params: Mapping[str, Any]) -> bytes:
        path = urlsplit(url).path
        try:
            response = self._http.get(
                url, params={**params, "t": self._token, "v": 3}, timeout=self._timeout, verify=self._verify
            )
        except requests.RequestException as exc:
            raise IbkrConnectionError(
                f"could not reach the Flex Web Service ({type(exc).__name__})",
                endpoint=path,
                code=IbkrErrorCode.CONNECTION,
            ) from None
        if response.status_code >= 300:
            raise IbkrRequestError(
                f"the Flex Web Service answered HTTP {response.status_code}; check the ibkr_flex "
                "connection's host (IBKR's is https://ndcdyn.interactivebrokers.com/AccountManagement/"
                "FlexWebService)",
                status=response.status_code,
                endpoint=path,
            )
        return response.content

    @staticmethod
    def _envelope(content: bytes) -> tuple[str, Mapping[str, str]] | None:
        """(Status, fields) of a FlexStatementResponse envelope, or None for a report."""
        try:
            root = SafeET.fromstring(content)
        except SafeET.ParseError:
            return None
        if root.tag != "FlexStatementResponse":
            return None
        fields = {child.tag: (child.text or "").strip() for child in root}
        return fields.get("Status", ""), fields

    def _raise_for(self, fields: Mapping[str, str], endpoint: str) -> NoReturn:
        code = int(fields.get("ErrorCode") or 0)
        text = fields.get("ErrorMessage") or FLEX_ERRORS.get(code, ("unknown error", "fail"))[0]
        action = FLEX_ERRORS.get(code, ("", "fail"))[1]
        if action == "token":
            raise IbkrAuthError(
                f"Flex error {code}: {text} Generate a new Flex token in Client Portal (Settings > Flex Web "
                "Service) and put it in the ibkr_flex connection's password.",
                endpoint=endpoint,
                ibkr_error=text,
                code=IbkrErrorCode.FLEX,
                ibkr_code=str(code),
                hint=TOKEN_HINT,
            )
        raise IbkrRequestError(
            f"Flex error {code}: {text}",
            endpoint=endpoint,
            ibkr_error=text,
            code=IbkrErrorCode.FLEX,
            ibkr_code=str(code),
            hint="the Flex query id and its settings in Client Portal (Performance & Reports > Flex Queries)",
            # "retry"/"throttled"/"poll" codes reach here only once the wait is used up.
            permanent=action == "fail",
        )

    def check_token(self, query_id: str = PROBE_QUERY_ID) -> str:
        """Ask IBKR whether it accepts the token, with one SendRequest; returns what IBKR said.

        With a real ``query_id`` a statement is generated (harmless: it is never fetched) and
        the answer proves both token and query. With the default probe id ``0`` IBKR answers
        1014 "Query is invalid" for a token it accepted, and 1012/1015 for a token it did not
        (UNCONFIRMED that IBKR checks the token before the query; the sandbox does). Raises
        :class:`IbkrAuthError` for a token error and :class:`IbkrRequestError` for anything else.
        """
        url = f"{self.base_url}/SendRequest"
        envelope = self._envelope(self._get(url, {"q": query_id}))
        if envelope is None:
            raise IbkrResponseError(
                "SendRequest did not answer with a FlexStatementResponse", endpoint=urlsplit(url).path
            )
        status, fields = envelope
        if status == "Success":
            return f"token and query {query_id} accepted (reference {fields.get('ReferenceCode', '?')})"
        code = int(fields.get("ErrorCode") or 0)
        if query_id == PROBE_QUERY_ID and code == QUERY_INVALID:
            return "token accepted (IBKR answered 1014 'Query is invalid' to the probe query id 0)"
        self._raise_for(fields, urlsplit(url).path)

    def fetch(
        self, query_id: str, *, from_date: date | None = None, to_date: date | None = None
    ) -> FlexReport:
        """SendRequest, then poll GetStatement until the report is ready (bounded by ``max_wait``)."""
        started = time.monotonic()
        params: dict[str, Any] = {"q": query_id}
        if from_date and to_date:
            params.update(fd=from_date.strftime("%Y%m%d"), td=to_date.strftime("%Y%m%d"))
        reference, statement_url = self._send_request(params, started)
        polls, backoff = 0, self.poll_interval
        while True:
            polls += 1
            content = self._get(statement_url, {"q": reference})
            envelope = self._envelope(content)
            if envelope is None:
                log.info("Flex report %s ready after %d poll(s)", reference, polls)
                return FlexReport(reference, content, parse_flex_statement(content), polls)
            status, fields = envelope
            code = int(fields.get("ErrorCode") or 0)
            action = FLEX_ERRORS.get(code, ("", "fail"))[1]
            if action == "poll":
                delay = self.poll_interval
            elif action in ("throttled", "retry"):
                backoff = min(backoff * 2, self.max_backoff)
                delay = backoff
            else:
                self._raise_for(fields, urlsplit(statement_url).path)
            elapsed = time.monotonic() - started
            if elapsed + delay > self.max_wait:
                raise IbkrRequestError(
                    f"Flex report {reference} not ready after {polls} poll(s) in {elapsed:.0f} s "
                    f"(last: {code} {fields.get('ErrorMessage', '')}); max_wait is {self.max_wait:g} s",
                    endpoint=urlsplit(statement_url).path,
                    code=IbkrErrorCode.FLEX_NOT_READY,
                    ibkr_code=str(code),
                )
            log.info(
                "Flex %s (%s %s); polling again in %.1f s",
                status,
                code,
                fields.get("ErrorMessage", ""),
                delay,
            )
            self._sleep(delay)

    def _statement_url(self, url: str) -> str:
        """The GetStatement URL from IBKR's answer, checked before the token is sent to it: the
        configured service itself (same scheme, host and port: http only for a local sandbox),
        or https on one of IBKR's hosts (``*.interactivebrokers.com``, ``*.ibkr.com``). Anything
        else would hand the Flex token to whoever wrote the answer."""
        ours, theirs = urlsplit(self.base_url), urlsplit(url)
        host = (theirs.hostname or "").lower()
        same_service = (theirs.scheme, host, theirs.port) == (
            ours.scheme,
            (ours.hostname or "").lower(),
            ours.port,
        )
        on_ibkr = theirs.scheme == "https" and host.endswith(IBKR_FLEX_HOST_SUFFIXES)
        if not (same_service and theirs.scheme in ("http", "https")) and not on_ibkr:
            raise IbkrResponseError(
                f"SendRequest named a statement URL on {theirs.scheme}://{host}, which is not the Flex "
                "service's host or one of IBKR's; refusing to send the Flex token there",
                endpoint=urlsplit(self.base_url).path + "/SendRequest",
                permanent=True,
            )
        return url

    def _send_request(self, params: Mapping[str, Any], started: float) -> tuple[str, str]:
        url = f"{self.base_url}/SendRequest"
        backoff = self.poll_interval
        while True:
            envelope = self._envelope(self._get(url, params))
            if envelope is None:
                raise IbkrResponseError(
                    "SendRequest did not answer with a FlexStatementResponse", endpoint=urlsplit(url).path
                )
            status, fields = envelope
            if status == "Success" and fields.get("ReferenceCode") and fields.get("Url"):
                return fields["ReferenceCode"], self._statement_url(fields["Url"])
            code = int(fields.get("ErrorCode") or 0)
            if FLEX_ERRORS.get(code, ("", "fail"))[1] not in ("throttled", "retry"):
                self._raise_for(fields, urlsplit(url).path)
            backoff = min(backoff * 2, self.max_backoff)
            if time.monotonic() - started + backoff > self.max_wait:
                self._raise_for(fields, urlsplit(url).path)
            self._sleep(backoff)
