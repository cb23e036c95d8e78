"""Plain-Python IBKR Web API client (no Airflow import).

The names below load on first use: importing this package (as every operator module does for
the error types) does not import the HTTP, JWT or crypto stack; building a client does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from ibkr_provider.lazy import lazy_attributes

if TYPE_CHECKING:
    from ibkr_provider.client.client import IbkrClient
    from ibkr_provider.client.config import AuthType, IbkrClientConfig
    from ibkr_provider.client.models.orders import OrderTicket

__getattr__ = lazy_attributes(
    __name__,
    {
        "IbkrClient": "ibkr_provider.client.client",
        "IbkrClientConfig": "ibkr_provider.client.config",
        "AuthType": "ibkr_provider.client.config",
        "OrderTicket": "ibkr_provider.client.models.orders",
    },
)

__all__ = [
    "AuthType",
    "IbkrAuthError",
    "IbkrClient",
    "IbkrClientConfig",
    "IbkrCompetingSessionError",
    "IbkrConfigError",
    "IbkrConnectionError",
    "IbkrError",
    "IbkrErrorCode",
    "IbkrNotFoundError",
    "IbkrOrderError",
    "IbkrOrderRefusedError",
    "IbkrRateLimitError",
    "IbkrRequestError",
    "IbkrResponseError",
    "IbkrSessionError",
    "IbkrValidationError",
    "OrderTicket",
    "is_permanent",
]
