"""What Connect IBKR says of a connection before it asks IBKR (the tested states run over HTTP
in tests/e2e/test_make_up.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest


def _conn(conn_type: str = "ibkr", **extra: Any) -> SimpleNamespace:
    return SimpleNamespace(conn_id="c", conn_type=conn_type, extra_dejson=extra)


@pytest.mark.parametrize(
    ("conn", "kind"),
    [
        (_conn(auth_type="oauth1a"), "profile"),
        (_conn("ibkr_oauth1a"), "profile"),
        (_conn(auth_type="oauth1a", consumer_profile="ibkr_consumer"), "missing"),  # disconnected
        (_conn("ibkr_gateway", auth_type="oauth2"), "invalid"),
        (_conn(auth_type="oauth1a", access_token="t"), None),  # tested
        (_conn(), None),
        (_conn("ibkr_oauth2"), None),
    ],
)
def test_the_state_a_connection_shows_without_asking_ibkr(conn: SimpleNamespace, kind: str | None) -> None:
    from ibkr_provider.plugins.connection_states import static_state  # the plugin imports Airflow

    state = static_state(conn)
    assert (state.kind if state else None) == kind


def test_connect_ibkr_lists_a_users_own_connections_the_profiles_and_the_shared_ones() -> None:
    from ibkr_provider.plugins.connections import shown_to  # the plugin imports Airflow

    alice = SimpleNamespace(get_id=lambda: "1", get_name=lambda: "alice")
    bob = SimpleNamespace(get_id=lambda: "2", get_name=lambda: "bob")
    alices = _conn(auth_type="oauth1a", consumer_profile="p", connected_by_id="1")
    assert shown_to(alices, alice) and not shown_to(alices, bob)
    assert shown_to(_conn(auth_type="oauth1a"), bob)  # a profile
    assert shown_to(_conn(), bob)  # a connection an admin made
    saved_before_ids = _conn(auth_type="oauth1a", consumer_profile="p", connected_by="alice")
    assert shown_to(saved_before_ids, alice) and not shown_to(saved_before_ids, bob)
