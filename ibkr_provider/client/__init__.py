"""Plain-Python IBKR Web API client (no Airflow import)."""

from ibkr_provider.client.client import IbkrClient
from ibkr_provider.client.config import AuthType, IbkrClientConfig
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
    "is_permanent",
]
