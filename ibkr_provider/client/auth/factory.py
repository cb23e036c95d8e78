"""The auth strategy an auth type's settings call for (the one place that knows them all)."""

from __future__ import annotations

from ibkr_provider.client.auth.base import AuthStrategy, SecretSink, TokenKeeper
from ibkr_provider.client.auth.gateway import GatewayAuth
from ibkr_provider.client.auth.oauth1a.strategy import OAuth1aAuth
from ibkr_provider.client.auth.oauth2 import OAuth2PrivateKeyJwtAuth
from ibkr_provider.client.auth.oauth2_user import OAuth2UserGrantAuth
from ibkr_provider.client.config import IbkrClientConfig
from ibkr_provider.client.settings.gateway import GatewaySettings
from ibkr_provider.client.settings.oauth1a import OAuth1aSettings
from ibkr_provider.client.settings.oauth2 import OAuth2Settings
from ibkr_provider.client.settings.oauth2_user import OAuth2UserSettings


def build_auth(config: IbkrClientConfig, *, secret_sink: SecretSink, keeper: TokenKeeper) -> AuthStrategy:
    """The strategy for ``config.auth``; each receives its own settings and the URLs it needs
    (a user's grant also the keeper of its rotated refresh token)."""
    settings = config.auth
    if isinstance(settings, OAuth2UserSettings):
        return OAuth2UserGrantAuth(settings, base_url=config.base_url, secret_sink=secret_sink, keeper=keeper)
    if isinstance(settings, OAuth2Settings):
        return OAuth2PrivateKeyJwtAuth(settings, base_url=config.base_url, secret_sink=secret_sink)
    if isinstance(settings, OAuth1aSettings):
        return OAuth1aAuth(settings, api_url=config.api_url, secret_sink=secret_sink)
    if isinstance(settings, GatewaySettings):
        return GatewayAuth()
    raise TypeError(f"no auth strategy for {type(settings).__name__}")
