"""The connection fields have one source, ``get_provider_info()``'s conn-fields: the hook reads
exactly those, and the README documents each."""

from __future__ import annotations

from pathlib import Path

from ibkr_provider.connection_fields import flex_conn_fields, ibkr_conn_fields
from ibkr_provider.get_provider_info import get_provider_info
from ibkr_provider.hooks.connection import EXTRA_FIELDS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_hook_reads_exactly_the_forms_fields() -> None:
    form = {c["connection-type"]: c["conn-fields"] for c in get_provider_info()["connection-types"]}
    assert set(EXTRA_FIELDS) == set(form["ibkr"]) == set(ibkr_conn_fields())
    assert set(form["ibkr_flex"]) == set(flex_conn_fields())


def test_the_readme_documents_every_connection_field() -> None:
    text = README.read_text()
    missing = [name for name in (*ibkr_conn_fields(), *flex_conn_fields()) if f"`{name}`" not in text]
    assert not missing, f"README.md does not document the connection fields {missing}"
