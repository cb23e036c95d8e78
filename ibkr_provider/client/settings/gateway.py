"""Gateway mode: a Client Portal Gateway the user runs and logs in to holds the session, so
the client needs no credentials."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ibkr_provider.client.settings.base import AuthType


@dataclass(frozen=True)
class GatewaySettings:
    """No credentials: the gateway holds the session."""

    @property
    def auth_type(self) -> AuthType:
        return AuthType.GATEWAY

    @property
    def identity(self) -> tuple[str | None, str | None]:
        return None, None

    @property
    def username(self) -> str | None:
        return None

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> GatewaySettings:
        return cls()
