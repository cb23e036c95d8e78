"""Plain-Python IBKR Web API client (no Airflow import)."""

from ibkr_provider.client.client import IbkrClient
from ibkr_provider.client.config import AuthType, IbkrClientConfig
from ibkr_provider.client.errors import (
    IbkrAuthError,
    IbkrCompetingSessionError,
    IbkrConfigError,
    IbkrConnectionError,
    IbkrError,
    IbkrOrderError,
    IbkrRateLimitError,
    IbkrRequestError,
    IbkrResponseError,
    IbkrSessionError,
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
    "IbkrOrderError",
    "IbkrRateLimitError",
    "IbkrRequestError",
    "IbkrResponseError",
    "IbkrSessionError",
]
