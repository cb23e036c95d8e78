"""The JSON schemas the connection forms' fields share (:mod:`ibkr_provider.connection_fields`,
:mod:`ibkr_provider.consent_fields`).

One JSON type plus null per field: Airflow 3.3's form renders a single-line input (a number
input, a switch for booleans) for those, and a JSON text box for fields that allow several types.
"""

from __future__ import annotations

from typing import Any

OPTIONAL_STRING: dict[str, Any] = {"type": ["string", "null"]}
#: A masked input: keys, tokens and secrets.
SECRET_STRING: dict[str, Any] = {"type": ["string", "null"], "format": "password"}
