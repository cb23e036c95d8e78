"""IBKR Flex Web Service: SendRequest, then GetStatement from the URL it returns (reference 8).

The Flex service has its own token (Client Portal, "Flex Web Service Configuration") and its own
error codes (:mod:`ibkr_provider.flex.codes`, which also says how each is handled). Polling is
bounded by ``max_wait`` seconds in total. Requests go through the provider's transport (raw
bytes: the answers are XML), so a network failure is a retried connection error like anywhere
else. The token travels as a query parameter: error messages name the endpoint path only, never
the URL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any, NoReturn
from urllib.parse import urlsplit

from ibkr_provider.client.errors import IbkrAuthError, IbkrErrorCode, IbkrRequestError, IbkrResponseError
from ibkr_provider.client.hosts import DEFAULT_FLEX_URL
from ibkr_provider.client.http.transport import HttpTransport
from ibkr_provider.flex.codes import FlexAction, FlexCode, action_of, message_of
from ibkr_provider.flex.report import FlexReport, envelope_of, parse_flex_statement

log = logging.getLogger(__name__)

#: A query id no account has: SendRequest answers 1014 for it once the token is accepted.
PROBE_QUERY_ID = "0"
TOKEN_HINT = (
    "the Flex token (Client Portal > Settings > Flex Web Service) in the ibkr_flex connection's password"
)
HOST_HINT = (
    "the ibkr_flex connection's host (IBKR's is https://ndcdyn.interactivebrokers.com/AccountManagement/"
    "FlexWebService)"
)
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
        transport: HttpTransport | None = None,
    ) -> None:
        self._token = token
        self.base_url = base_url.rstrip("/")
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.max_wait = max_wait
        self._sleep = sleep
        self._http = transport or HttpTransport(verify=verify, timeout=timeout, sleep=sleep)

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> FlexClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _get(self, url: str, params: Mapping[str, Any]) -> bytes:
        try:
            content: bytes = self._http.send(
                "GET", url, params={**params, "t": self._token, "v": 3}, raw=True
            )
        except IbkrRequestError as exc:
            if exc.status is not None:  # an HTTP error page: not a Flex service at this URL
                exc.hint = HOST_HINT
            raise
        return content

    def _envelope(self, url: str, params: Mapping[str, Any]) -> tuple[str, Mapping[str, str]]:
        envelope = envelope_of(self._get(url, params))
        if envelope is None:
            raise IbkrResponseError(
                "SendRequest did not answer with a FlexStatementResponse", endpoint=urlsplit(url).path
            )
        return envelope

    def _raise_for(self, fields: Mapping[str, str], endpoint: str) -> NoReturn:
        code = int(fields.get("ErrorCode") or 0)
        text = fields.get("ErrorMessage") or message_of(code)
        action = action_of(code)
        if action is FlexAction.TOKEN:
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
            # waiting codes reach here only once the wait is used up
            permanent=action is FlexAction.FAIL,
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
        status, fields = self._envelope(url, {"q": query_id})
        if status == "Success":
            return f"token and query {query_id} accepted (reference {fields.get('ReferenceCode', '?')})"
        code = int(fields.get("ErrorCode") or 0)
        if query_id == PROBE_QUERY_ID and code == FlexCode.QUERY_INVALID:
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
            envelope = envelope_of(content)
            if envelope is None:
                log.info("Flex report %s ready after %d poll(s)", reference, polls)
                return FlexReport(reference, content, parse_flex_statement(content), polls)
            status, fields = envelope
            code = int(fields.get("ErrorCode") or 0)
            action = action_of(code)
            if not action.waits:
                self._raise_for(fields, urlsplit(statement_url).path)
            if action is FlexAction.POLL:
                delay = self.poll_interval
            else:
                backoff = min(backoff * 2, self.max_backoff)
                delay = backoff
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
        ours_host = (ours.hostname or "").lower()
        same_service = (theirs.scheme, host, theirs.port) == (ours.scheme, ours_host, ours.port)
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
            status, fields = self._envelope(url, params)
            if status == "Success" and fields.get("ReferenceCode") and fields.get("Url"):
                return fields["ReferenceCode"], self._statement_url(fields["Url"])
            code = int(fields.get("ErrorCode") or 0)
            if action_of(code) not in (FlexAction.THROTTLED, FlexAction.RETRY):
                self._raise_for(fields, urlsplit(url).path)
            backoff = min(backoff * 2, self.max_backoff)
            if time.monotonic() - started + backoff > self.max_wait:
                self._raise_for(fields, urlsplit(url).path)
            self._sleep(backoff)
