"""The brokerage session: SSO validation, ``ssodh/init``, auth status, tickle, logout and the
``/iserver/accounts`` pre-flight."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from ibkr_sandbox.routes.common import SERVER_INFO, Gate, auth_status, ibkr_error


def session_router(gate: Gate) -> APIRouter:
    router = APIRouter()
    state, settings = gate.state, gate.settings

    @router.get("/v1/api/sso/validate")
    def sso_validate(request: Request) -> dict[str, Any]:
        record = gate.session(request)
        remaining = settings.sso_idle_timeout - (time.time() - record.last_active)
        return {
            "USER_ID": state.user_id_of(record.credential),
            "USER_NAME": record.credential,
            "RESULT": True,
            "AUTH_TIME": int(record.created_at * 1000),
            "SF_ENABLED": False,
            "IS_FREE_TRIAL": False,
            "CREDENTIAL": record.credential,
            "IP": record.ip,
            "EXPIRES": int(remaining * 1000),
            "QUALIFIED_FOR_MOBILE_AUTH": None,
            "LANDING_APP": "UNIVERSAL",
            "IS_MASTER": False,
            "lastAccessed": int(record.last_active * 1000),
            "LOGIN_TYPE": 2,
            "PAPER_USER_NAME": record.credential,
            "features": {"env": "PROD", "wlms": True, "realtime": True, "bond": True, "optionChains": True},
            "region": "NJ",
        }

    @router.api_route("/v1/api/iserver/auth/status", methods=["GET", "POST"])
    def iserver_auth_status(request: Request) -> dict[str, Any]:
        return auth_status(gate.session(request))

    @router.post("/v1/api/iserver/auth/ssodh/init")
    async def ssodh_init(request: Request) -> dict[str, Any]:
        record = gate.session(request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ibkr_error(400, 'Bad Request: body must be JSON like {"publish": true, "compete": true}')
        state.init_brokerage(record, compete=bool(body.get("compete", False)))
        return auth_status(record)

    @router.api_route("/v1/api/tickle", methods=["GET", "POST"])
    def tickle(request: Request) -> dict[str, Any]:
        record = gate.session(request)
        return {
            "session": record.public_id,
            "ssoExpires": int(settings.sso_idle_timeout * 1000),
            "collission": False,
            "userId": state.user_id_of(record.credential),
            "hmds": {"error": "no bridge"},
            "iserver": {"authStatus": auth_status(record)},
        }

    @router.post("/v1/api/logout")
    def logout(request: Request) -> dict[str, Any]:
        record = gate.session(request)
        state.end_session(record.session_id)
        return {"status": True}

    @router.get("/v1/api/iserver/accounts")
    def iserver_accounts(request: Request) -> dict[str, Any]:
        record = gate.brokerage(request)
        with state.lock:
            record.iserver_accounts_queried = True
        accounts = state.credentials[record.credential]
        book = state.book.accounts
        return {
            "accounts": accounts,
            "acctProps": {
                a: {"hasChildAccounts": False, "supportsCashQty": True, "supportsFractions": False}
                for a in accounts
            },
            "aliases": {a: a for a in accounts},
            "allowFeatures": {"showGFIS": True, "allowCrypto": False, "allowFA": False},
            "chartPeriods": {},
            "groups": [],
            "profiles": [],
            "selectedAccount": accounts[0] if accounts else None,
            "serverInfo": SERVER_INFO,
            "sessionId": record.public_id[:16],
            "isFT": False,
            # A real IBKR login is either paper or live. The sandbox's one login holds both
            # kinds, so it says isPaper only when all its accounts agree; each account's
            # /portfolio/accounts ``type`` ("DEMO" for paper) says the rest.
            **({"isPaper": kinds.pop()} if len(kinds := {book[a].paper for a in accounts}) == 1 else {}),
        }

    return router
