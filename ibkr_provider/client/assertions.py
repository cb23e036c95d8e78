"""Deprecated alias of :mod:`ibkr_provider.client.jwt_signing` (renamed in 0.2; removed in 0.3)."""

import warnings

from ibkr_provider.client.jwt_signing import AssertionSigner, load_private_key

warnings.warn(
    "ibkr_provider.client.assertions is now ibkr_provider.client.jwt_signing",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["AssertionSigner", "load_private_key"]
