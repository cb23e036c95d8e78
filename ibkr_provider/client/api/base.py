"""What the endpoint groups need from the client, as a small protocol.

``PortfolioApi``, ``IserverApi``, ``OrderService`` and ``MarketData`` depend on this protocol,
not on :class:`~ibkr_provider.client.client.IbkrClient`, so they can be built and tested on
their own and there is no import cycle between the client and its parts. The request pipeline
(:class:`~ibkr_provider.client.api.pipeline.RequestPipeline`) implements it; unit tests give the
groups a fake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ibkr_provider.client import fields
from ibkr_provider.client.errors import IbkrResponseError, IbkrValidationError

if TYPE_CHECKING:
    from ibkr_provider.client.models.session import BrokerageAccounts
    from ibkr_provider.client.session.stores.base import Lease


class IbkrApi(Protocol):
    """Requests on the shared session, with IBKR's pre-flights and the session's named locks."""

    @property
    def default_account(self) -> str | None:
        """The connection's ``account_id``."""

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        idempotent: bool = True,
        after_recovery: Callable[[], object] | None = None,
    ) -> Any:
        """A paced ``/v1/api`` request on the shared session, recovered once. ``idempotent``
        False: an ambiguous failure is not retried (order placement). ``after_recovery`` runs
        between a recovery and the repeat (a group's own pre-flight)."""

    def iserver_preflight(self) -> BrokerageAccounts:
        """``GET /iserver/accounts``, which IBKR requires before orders and market data."""

    def portfolio_preflight(self, *, force: bool = False) -> list[Any]:
        """``GET /portfolio/accounts``, which IBKR requires before other ``/portfolio`` calls."""

    def lock(self, name: str, timeout: float) -> AbstractContextManager[Lease]:
        """A lock shared by every process of the session; its lease says whether it is still held."""


def resolve_account(given: str | None, default: str | None) -> str:
    """The account a call is for: ``given``, else the connection's default; checked so that it
    can go into a URL path (see :func:`ibkr_provider.client.fields.account_id`)."""
    chosen = given or default
    if not chosen:
        raise IbkrValidationError(
            "account_id", "no account given and the connection has no default account_id; pass one"
        )
    return fields.account_id(chosen)


T = TypeVar("T")


def read_answer(path: str, parse: Callable[[], T]) -> T:
    """``parse()`` of the answer of ``path``: an answer it cannot read (a row without its id, a
    number where text belongs) is an :class:`IbkrResponseError` naming the endpoint it came from,
    so a task's log says which of IBKR's answers was wrong."""
    try:
        return parse()
    except IbkrResponseError as exc:
        if not exc.endpoint:
            exc.endpoint = "/v1/api" + path
        raise
