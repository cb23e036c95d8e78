"""The connection fields of Connect IBKR's OAuth 2.0 authorization code: an app profile's
authorization server, and what a consent saves in the user's connection. Part of the ``ibkr``
and ``ibkr_oauth2`` forms (:mod:`ibkr_provider.connection_fields`)."""

from __future__ import annotations

from typing import Any

from ibkr_provider.field_schemas import OPTIONAL_STRING, SECRET_STRING


def oauth2_consent_fields() -> dict[str, Any]:
    """OAuth 2.0 authorization code (Connect IBKR): an app profile's authorization server, and
    what a consent saves in the user's connection. IBKR has not published these endpoints."""
    unconfirmed = "IBKR has not published it (UNCONFIRMED)."
    return {
        "issuer": {
            "label": "Issuer (Connect IBKR)",
            "description": "Authorization server whose RFC 8414 metadata (/.well-known/oauth-authorization-"
            f"server) names the authorize, token and revocation endpoints. {unconfirmed}",
            "schema": OPTIONAL_STRING,
        },
        "authorize_url": {
            "label": "Authorize URL (Connect IBKR)",
            "description": "Where users log in and consent, instead of discovery (OAuth 1.0a: IBKR's "
            "authorize page, default https://www.interactivebrokers.com/authorize).",
            "schema": OPTIONAL_STRING,
        },
        "token_url": {
            "label": "Token URL (Connect IBKR)",
            "description": "Token endpoint of the authorization-code flow, instead of discovery. "
            + unconfirmed,
            "schema": OPTIONAL_STRING,
        },
        "revocation_url": {
            "label": "Revocation URL (Connect IBKR)",
            "description": "RFC 7009 endpoint Disconnect revokes the user's grant at (empty: none).",
            "schema": OPTIONAL_STRING,
        },
        "scope": {
            "label": "Scope (Connect IBKR)",
            "description": f"Scopes the consent asks for (default sso-sessions.write). {unconfirmed}",
            "schema": OPTIONAL_STRING,
        },
        "assertion_audience": {
            "label": "Client assertion audience (Connect IBKR)",
            "description": "The aud of the client assertion at the token endpoint (default: the token "
            "endpoint's URL, RFC 7523).",
            "schema": OPTIONAL_STRING,
        },
        "callback_url": {
            "label": "Callback URL (Connect IBKR)",
            "description": "Where the authorization server sends the user back (default: this Airflow's "
            "/ibkr/connect/callback); register exactly this URL with IBKR.",
            "schema": OPTIONAL_STRING,
        },
        "user_session": {
            "label": "User session (Connect IBKR)",
            "description": "How a user's OAuth 2.0 token reaches the Web API: sso_sessions (default: an SSO "
            f"session opened with it) or access_token (sent as the bearer itself). {unconfirmed}",
            "schema": {"type": ["string", "null"], "enum": ["sso_sessions", "access_token", None]},
        },
        "refresh_token": {
            "label": "Refresh token (Connect IBKR)",
            "description": "The user's OAuth 2.0 refresh token, saved by Connect IBKR (rotations are kept "
            "in the session cache).",
            "schema": SECRET_STRING,
        },
    }
