"""Validated, immutable settings for one IBKR client.

:meth:`IbkrClientConfig.from_mapping` reads the raw fields of an Airflow connection once: the
settings every auth type shares here, the auth type's own in its settings class
(:mod:`ibkr_provider.client.settings`), each checked complete when it is parsed. Everything a user
can get wrong is checked before any request is sent, and every error names the connection field
and the fix (see :class:`~ibkr_provider.client.errors.IbkrConfigError`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ibkr_provider.client import fields
from ibkr_provider.client.errors import IbkrConfigError
from ibkr_provider.client.hosts import DEFAULT_BASE_URL
from ibkr_provider.client.http.limits import DEFAULT_GATEWAY_RATE_LIMIT, DEFAULT_OAUTH_RATE_LIMIT
from ibkr_provider.client.http.retries import RetryPolicy
from ibkr_provider.client.settings.base import AuthSettings, AuthType, text_of
from ibkr_provider.client.settings.gateway import GatewaySettings
from ibkr_provider.client.settings.oauth1a import OAuth1aSettings
from ibkr_provider.client.settings.oauth2_user import parse_oauth2

__all__ = ["AuthType", "IbkrClientConfig"]

DEFAULT_TIMEOUT_SECONDS = 30.0
#: IBKR: "It is expected to call this endpoint approximately every 60 seconds" (/tickle).
DEFAULT_TICKLE_INTERVAL_SECONDS = 60.0
#: Renew the session this long before the access token expires (capped at half its lifetime).
DEFAULT_REFRESH_LEAD_SECONDS = 60.0
DEFAULT_SESSION_CACHE_DIR = Path("~/.cache/airflow-provider-ibkr/sessions")

#: Each auth type's settings parser (a new auth type is one more row).
SETTINGS: dict[AuthType, Callable[[Mapping[str, Any]], AuthSettings]] = {
    AuthType.OAUTH2: parse_oauth2,
    AuthType.OAUTH1A: OAuth1aSettings.parse,
    AuthType.GATEWAY: GatewaySettings.parse,
}


def _config_number(
    name: str, values: Mapping[str, Any], default: float, low: float, high: float, ex: str
) -> float:
    parsed = fields.number(
        name, values.get(name), default=default, minimum=low, maximum=high, example=ex, error=IbkrConfigError
    )
    return default if parsed is None else parsed


@dataclass(frozen=True)
class IbkrClientConfig:
    """Settings of one IBKR client (one IBKR username at one API host).

    ``auth`` holds exactly one auth type's settings. Build it with :meth:`from_mapping` to get
    the field checks; the dataclass itself trusts its arguments.
    """

    auth: AuthSettings = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    account_id: str | None = None
    verify: bool | str = True
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    #: ``file`` (default), ``file:///dir``, ``memory`` or ``redis://host:port/db``.
    session_cache: str = "file"
    #: Directory of the ``file`` cache (the hook sets it from Airflow's ``[ibkr] session_cache_dir``).
    session_cache_dir: Path = DEFAULT_SESSION_CACHE_DIR
    #: Global requests per second for this username; None uses IBKR's documented default.
    rate_limit: float | None = None
    tickle_interval: float = DEFAULT_TICKLE_INTERVAL_SECONDS
    session_refresh_lead: float = DEFAULT_REFRESH_LEAD_SECONDS
    #: Take the brokerage session over from other logins when opening a new session.
    compete_on_login: bool = True
    #: Take it over even from another connection of this deployment that holds it (see holders).
    displace_other_connections: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def auth_type(self) -> AuthType:
        return self.auth.auth_type

    @property
    def effective_rate_limit(self) -> float:
        """Requests per second the pacer allows (``rate_limit`` or IBKR's default for the mode)."""
        if self.rate_limit is not None:
            return self.rate_limit
        return DEFAULT_GATEWAY_RATE_LIMIT if self.auth_type is AuthType.GATEWAY else DEFAULT_OAUTH_RATE_LIMIT

    @property
    def identity(self) -> tuple[str | None, str | None]:
        """Who the session belongs to, for the shared cache's key: (client id, username) for
        OAuth 2.0, (consumer key, access token) for OAuth 1.0a."""
        return self.auth.identity

    @property
    def api_url(self) -> str:
        """Root of the Web API (``/v1/api``) that every account and trading call goes to."""
        return f"{self.base_url}/v1/api"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> IbkrClientConfig:
        """Validate raw settings (as found in an Airflow connection) and build the config.

        Shared keys: ``base_url`` (and ``port``), ``auth_type``, ``account_id``, ``verify``,
        ``timeout``, ``session_cache``, ``session_cache_dir``, ``rate_limit``, ``tickle_interval``,
        ``session_refresh_lead``, ``compete_on_login``, ``displace_other_connections``,
        ``max_retries``, ``max_retry_seconds``; the auth type's own keys are its settings'.
        """
        raw_auth = (text_of(values, "auth_type") or AuthType.OAUTH2.value).lower()
        try:
            auth_type = AuthType(raw_auth)
        except ValueError:
            raise IbkrConfigError(
                "auth_type", f"{raw_auth!r} is not supported; use 'oauth2', 'oauth1a' or 'gateway'"
            ) from None
        rate_limit = (
            _config_number("rate_limit", values, 0.0, 0.01, 1000, "10")
            if text_of(values, "rate_limit")
            else None
        )
        account = text_of(values, "account_id")
        return cls(
            auth=SETTINGS[auth_type](values),
            base_url=fields.base_url(text_of(values, "base_url"), values.get("port"), error=IbkrConfigError),
            account_id=fields.account_id(account, error=IbkrConfigError) if account else None,
            verify=fields.verify(values.get("verify"), error=IbkrConfigError),
            timeout=_config_number("timeout", values, DEFAULT_TIMEOUT_SECONDS, 0.001, 600, "30"),
            session_cache=text_of(values, "session_cache") or "file",
            session_cache_dir=Path(
                text_of(values, "session_cache_dir") or DEFAULT_SESSION_CACHE_DIR
            ).expanduser(),
            rate_limit=rate_limit,
            tickle_interval=_config_number(
                "tickle_interval", values, DEFAULT_TICKLE_INTERVAL_SECONDS, 1, 3600, "60"
            ),
            session_refresh_lead=_config_number(
                "session_refresh_lead", values, DEFAULT_REFRESH_LEAD_SECONDS, 0, 86_400, "60"
            ),
            compete_on_login=fields.flag(
                "compete_on_login", values.get("compete_on_login"), default=True, error=IbkrConfigError
            ),
            displace_other_connections=fields.flag(
                "displace_other_connections",
                values.get("displace_other_connections"),
                default=False,
                error=IbkrConfigError,
            ),
            retry=RetryPolicy(
                max_attempts=int(_config_number("max_retries", values, 4, 0, 100, "4")) + 1,
                max_seconds=_config_number("max_retry_seconds", values, 60.0, 0.1, 3600, "60"),
            ),
        )
