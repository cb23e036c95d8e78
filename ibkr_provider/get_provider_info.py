"""Provider metadata read by Airflow's ProvidersManager.

Airflow 3.3 builds the connection form only from ``conn-fields`` and ``ui-field-behaviour``
in this dict (it no longer imports the hook for the form), so every connection option the
hook reads must be declared here with a label, a description and a JSON schema.
"""

from __future__ import annotations

from typing import Any

from ibkr_provider import __version__
from ibkr_provider.connection_fields import auth_conn_fields, flex_conn_fields, ibkr_conn_fields

#: Per auth type: the hook, its name in the type list, and how host, login and password show.
_AUTH_TYPES: dict[str, dict[str, Any]] = {
    "oauth2": {
        "hook": "IbkrOAuth2Hook",
        "name": "Interactive Brokers (OAuth 2.0)",
        "behaviour": {
            "hidden-fields": ["schema", "port", "password"],
            "relabeling": {"host": "API base URL", "login": "Client id"},
            "placeholders": {
                "host": "https://api.ibkr.com",
                "login": "the OAuth 2.0 client id IBKR registered for your app",
            },
        },
    },
    "oauth1a": {
        "hook": "IbkrOAuth1aHook",
        "name": "Interactive Brokers (OAuth 1.0a self-service)",
        "behaviour": {
            "hidden-fields": ["schema", "port"],
            "relabeling": {
                "host": "API base URL",
                "login": "Consumer key",
                "password": "Access token secret",
            },
            "placeholders": {
                "host": "https://api.ibkr.com",
                "login": "the 9-character consumer key you chose on IBKR's self-service OAuth page",
                "password": "the access token secret IBKR's page showed (base64)",
            },
        },
    },
    "gateway": {
        "hook": "IbkrGatewayHook",
        "name": "Interactive Brokers (Client Portal Gateway)",
        "behaviour": {
            "hidden-fields": ["schema", "port", "login", "password"],
            "relabeling": {"host": "Gateway URL"},
            "placeholders": {"host": "https://localhost:5000 (the gateway you run and log in to)"},
        },
    },
}


def _connection_type(
    conn_type: str, hook: str, name: str, behaviour: dict[str, Any], fields: dict[str, Any]
) -> dict[str, Any]:
    """One entry of ``connection-types``: what the form shows for ``conn_type``."""
    return {
        "connection-type": conn_type,
        "hook-class-name": f"ibkr_provider.hooks.{hook}",
        "hook-name": name,
        "ui-field-behaviour": behaviour,
        "conn-fields": fields,
    }


def get_provider_info() -> dict[str, Any]:
    """Return the provider description consumed by ``airflow providers`` and the connection form."""
    return {
        "package-name": "airflow-provider-ibkr",
        "name": "Interactive Brokers",
        "description": "Interactive Brokers (IBKR) Web API: portfolio snapshots, approved rebalances and "
        "DCA, Flex reports, risk checks, a trade journal and DAGs that run on IBKR's streamed fills, "
        "prices and PnL; OAuth 2.0, OAuth 1.0a and Gateway connections; a portfolio page in the UI.",
        "versions": [__version__],
        "connection-types": [
            _connection_type(
                "ibkr",
                "ibkr.IbkrHook",
                "Interactive Brokers",
                {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "API base URL",
                        "login": "Client id (oauth2) or consumer key (oauth1a)",
                        "password": "Access token secret (oauth1a)",
                    },
                    "placeholders": {
                        "host": "https://api.ibkr.com (or https://localhost:5000 for a gateway)",
                        "login": "OAuth 2.0 client id, or OAuth 1.0a consumer key",
                        "password": "oauth1a only: the access token secret IBKR showed you",
                    },
                },
                ibkr_conn_fields(),
            ),
            *(
                _connection_type(
                    f"ibkr_{auth}",
                    f"ibkr.{spec['hook']}",
                    spec["name"],
                    spec["behaviour"],
                    auth_conn_fields(auth),
                )
                for auth, spec in _AUTH_TYPES.items()
            ),
            _connection_type(
                "ibkr_flex",
                "flex.IbkrFlexHook",
                "Interactive Brokers Flex",
                {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "Flex Web Service URL", "password": "Flex token"},
                    "placeholders": {
                        "host": "https://ndcdyn.interactivebrokers.com/AccountManagement/FlexWebService"
                    },
                },
                flex_conn_fields(),
            ),
        ],
        "config": {
            "ibkr": {
                "description": "Interactive Brokers provider.",
                "options": {
                    "session_cache_dir": {
                        "description": "Directory of the file session cache shared by the tasks on one host. "
                        "Empty: $AIRFLOW_HOME/ibkr/session_cache.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/var/cache/airflow/ibkr",
                        "default": "",
                    },
                    "connect_state_cache": {
                        "description": "Where Connect IBKR keeps pending consents (10 minutes each): file "
                        "(one API server host) or redis://host:6379/0 (several API server hosts).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "redis://redis:6379/0",
                        "default": "file",
                    },
                },
            }
        },
        "hooks": [
            {
                "integration-name": "Interactive Brokers",
                "python-modules": ["ibkr_provider.hooks.ibkr", "ibkr_provider.hooks.flex"],
            }
        ],
        "operators": [
            {
                "integration-name": "Interactive Brokers",
                "python-modules": [
                    "ibkr_provider.operators.portfolio",
                    "ibkr_provider.operators.orders",
                    "ibkr_provider.operators.flex",
                    "ibkr_provider.operators.market",
                    "ibkr_provider.operators.approval",
                    "ibkr_provider.operators.cancel",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Interactive Brokers",
                "python-modules": ["ibkr_provider.sensors.order_status"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Interactive Brokers",
                "python-modules": [
                    "ibkr_provider.triggers.order_status",
                    "ibkr_provider.triggers.fills",
                    "ibkr_provider.triggers.prices",
                    "ibkr_provider.triggers.account_values",
                    "ibkr_provider.triggers.flex",
                ],
            }
        ],
    }
