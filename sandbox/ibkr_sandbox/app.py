"""The sandbox's HTTP surface: IBKR's OAuth 2.0, session and portfolio endpoints.

Error bodies copy what IBKR is documented or reported to send (ibind and ibeam issue threads):
``401 {"error":"not authenticated","statusCode":401}`` on a bad bearer and
``400 {"error":"Bad Request: no bridge","statusCode":400}`` for ``/iserver`` without a
brokerage session. ``/__sandbox__/*`` is the sandbox's own control plane.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.parse
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ibkr_sandbox import portfolio
from ibkr_sandbox.consent import ConsentBroker, consent_page
from ibkr_sandbox.control import ASGIApp, SandboxControl
from ibkr_sandbox.flex import add_flex_routes
from ibkr_sandbox.oauth import JwtRejected, verify_client_assertion, verify_sso_jwt
from ibkr_sandbox.oauth1 import OAuth1Rejected
from ibkr_sandbox.orders import PromptRule
from ibkr_sandbox.seed import SANDBOX_USER_ID, SeedAccount
from ibkr_sandbox.state import Fault, SandboxState, SsoSessionRecord

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SERVER_INFO = {"serverName": "SandboxGW1", "serverVersion": "Build 10.30.1s (airflow-provider-ibkr sandbox)"}


class SandboxHttpError(Exception):
    """An IBKR-style error answer."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _ibkr_error(status: int, text: str) -> SandboxHttpError:
    return SandboxHttpError(status, {"error": text, "statusCode": status})


def _oauth_error(status: int, error: str, description: str) -> SandboxHttpError:
    return SandboxHttpError(status, {"error": error, "error_description": description, "status": status})


def create_app(state: SandboxState, flex_token: str = "") -> ASGIApp:
    """Build the sandbox's ASGI app over ``state`` (one app per sandbox process); with a
    ``flex_token`` it also serves the Flex Web Service."""
    app = FastAPI(title="IBKR Web API sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    if flex_token:
        add_flex_routes(app, state, flex_token)
    settings = state.settings

    @app.exception_handler(SandboxHttpError)
    async def _sandbox_error(_: Request, exc: SandboxHttpError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status)

    # ------------------------------------------------------------------ helpers
    def bearer(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        return header[7:].strip() if header.lower().startswith("bearer ") else None

    def signed_url(request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}{request.url.path}"

    def oauth1_token(request: Request) -> str:
        """OAuth 1.0a: the live session token a request is signed with (checked)."""
        verifier = state.oauth1
        if verifier is None:
            raise _ibkr_error(401, "not authenticated")
        header = request.headers.get("authorization", "")
        with state.lock:
            try:
                _, lst = verifier.request(
                    request.method, signed_url(request), dict(request.query_params), header
                )
            except OAuth1Rejected as exc:
                if exc.bad_signature:
                    state.counters["rejected_signatures"] += 1
                raise SandboxHttpError(exc.status, exc.body) from None
        return lst

    def session(request: Request) -> SsoSessionRecord:
        if settings.gateway:
            key = None
        elif settings.oauth1a or request.headers.get("authorization", "").startswith("OAuth "):
            # oauth1a mode takes only signed requests; oauth2 mode also takes OAuth 1.0a ones (the
            # connections Connect IBKR makes in `make up`), told apart by the header's scheme
            key = oauth1_token(request)
        else:
            key = bearer(request)
        record = state.live_session(key)
        if record is None:
            raise _ibkr_error(401, "not authenticated")
        return record

    def brokerage(request: Request) -> SsoSessionRecord:
        record = session(request)
        if not record.brokerage:
            raise _ibkr_error(400, "Bad Request: no bridge")
        return record

    def account_for(record: SsoSessionRecord, account_id: str) -> SeedAccount:
        if not record.portfolio_accounts_queried:
            raise _ibkr_error(500, "Please query /portfolio/accounts first")
        if account_id not in state.credentials.get(record.credential, []):
            raise _ibkr_error(400, f"Bad Request: accountId is not valid: {account_id}")
        return state.book.accounts[account_id]

    def auth_status(record: SsoSessionRecord) -> dict[str, Any]:
        return {
            "authenticated": record.brokerage,
            "competing": record.competing,
            "connected": True,
            "message": "",
            "fail": "",
            "MAC": "02:00:00:5A:4D:42",
            "hardware_info": "5a4d42|02:00:00:5A:4D:42",
            "serverInfo": SERVER_INFO,
        }

    # ------------------------------------------------------------------ OAuth 2.0
    @app.post("/oauth2/api/v1/token")
    async def token(request: Request) -> dict[str, Any]:
        with state.lock:
            state.counters["token_requests"] += 1
        if settings.gateway:
            raise _ibkr_error(404, "Not Found")
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            raise _oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != JWT_BEARER:
            raise _oauth_error(400, "invalid_request", f"client_assertion_type must be {JWT_BEARER}")
        scope = str(form.get("scope") or "")
        if "sso-sessions.write" not in scope.split():
            raise _oauth_error(400, "invalid_scope", "scope must include sso-sessions.write")
        assertion = form.get("client_assertion")
        if not isinstance(assertion, str) or not assertion:
            raise _oauth_error(400, "invalid_request", "client_assertion is required")
        try:
            client_id = verify_client_assertion(
                assertion,
                state.client_keys,
                leeway=settings.clock_skew,
                max_lifetime=settings.max_assertion_lifetime,
            )
        except JwtRejected as exc:
            raise _oauth_error(exc.status, exc.error, exc.description) from None
        form_client = form.get("client_id")
        if form_client and form_client != client_id:
            raise _oauth_error(401, "invalid_client", "client_id does not match the assertion issuer")
        access, lifetime = state.issue_access_token(client_id)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "scope": "sso-sessions.write",
            "expires_in": int(lifetime),
        }

    @app.post("/gw/api/v1/sso-sessions")
    async def sso_sessions(request: Request) -> dict[str, Any]:
        if settings.gateway:
            raise _ibkr_error(404, "Not Found")
        token_record = state.access_token(bearer(request) or "")
        if token_record is None:
            raise _oauth_error(401, "invalid_token", "access token missing, unknown or expired")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/jwt":
            raise _oauth_error(415, "invalid_request", "Content-Type must be application/jwt")
        body = (await request.body()).decode(errors="replace").strip()
        try:
            claims = verify_sso_jwt(
                body, state.client_keys, client_id=token_record.client_id, leeway=settings.clock_skew
            )
        except JwtRejected as exc:
            raise _oauth_error(exc.status, exc.error, exc.description) from None
        if claims["credential"] not in state.credentials:
            raise _oauth_error(403, "access_denied", "credential is not a username this client may act for")
        record = state.open_sso_session(token_record, claims["credential"], claims["ip"])
        return {"active": True, "access_token": record.session_id, "token_type": "Bearer"}

    # ------------------------------------------------------------------ OAuth 1.0a
    @app.post("/v1/api/oauth/live_session_token")
    def live_session_token(request: Request) -> dict[str, Any]:
        verifier = state.oauth1
        if verifier is None:
            raise _ibkr_error(404, "Not Found")
        with state.lock:
            try:
                consumer, lst, answer = verifier.live_session_token(
                    request.method, signed_url(request), request.headers.get("authorization", "")
                )
            except OAuth1Rejected as exc:
                if exc.bad_signature:
                    state.counters["rejected_signatures"] += 1
                raise SandboxHttpError(exc.status, exc.body) from None
            expires_at = answer["live_session_token_expiration"] / 1000
            state.open_oauth1_session(consumer.credential, lst, expires_at, replaces=consumer.tokens[:-1])
        return answer

    # ------------------------------------------------------------------ OAuth 1.0a three-legged
    def consent_broker() -> ConsentBroker:
        if state.consent is None:
            raise _ibkr_error(404, "Not Found")
        return state.consent

    def rejected(exc: OAuth1Rejected) -> SandboxHttpError:
        if exc.bad_signature:
            state.counters["rejected_signatures"] += 1
        return SandboxHttpError(exc.status, exc.body)

    @app.post("/v1/api/oauth/request_token")
    def request_token(request: Request) -> dict[str, Any]:
        broker = consent_broker()
        with state.lock:
            try:
                token = broker.request_token(
                    request.method, signed_url(request), request.headers.get("authorization", "")
                )
            except OAuth1Rejected as exc:
                raise rejected(exc) from None
            state.counters["request_tokens"] += 1
        return {"oauth_token": token}

    @app.get("/authorize", response_class=HTMLResponse)
    def authorize_page(oauth_token: str = "") -> HTMLResponse:
        broker = consent_broker()
        with state.lock:
            known = broker.is_pending(oauth_token)
        if not known:
            return HTMLResponse(
                consent_page(None, "This authorization request is unknown or has expired."), 400
            )
        return HTMLResponse(consent_page(oauth_token, None))

    @app.post("/authorize")
    async def authorize_decision(request: Request) -> Response:
        broker = consent_broker()
        form = {k: v[0] for k, v in urllib.parse.parse_qs((await request.body()).decode()).items()}
        token = form.get("oauth_token", "")
        accept = form.get("decision") == "accept"
        with state.lock:
            try:
                target = broker.decide(token, form.get("username", ""), form.get("password", ""), accept)
            except ValueError as exc:
                return HTMLResponse(consent_page(token if broker.is_pending(token) else None, str(exc)), 400)
            state.counters["consents_accepted" if accept else "consents_denied"] += 1
        return RedirectResponse(target, status_code=303)

    @app.post("/v1/api/oauth/access_token")
    def access_token(request: Request) -> dict[str, Any]:
        broker = consent_broker()
        with state.lock:
            try:
                answer = broker.access_token(
                    request.method, signed_url(request), request.headers.get("authorization", "")
                )
            except OAuth1Rejected as exc:
                raise rejected(exc) from None
            state.counters["access_tokens"] += 1
        return answer

    # ------------------------------------------------------------------ sessions
    @app.get("/v1/api/sso/validate")
    def sso_validate(request: Request) -> dict[str, Any]:
        record = session(request)
        remaining = settings.sso_idle_timeout - (time.time() - record.last_active)
        return {
            "USER_ID": SANDBOX_USER_ID,
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

    @app.api_route("/v1/api/iserver/auth/status", methods=["GET", "POST"])
    def iserver_auth_status(request: Request) -> dict[str, Any]:
        return auth_status(session(request))

    @app.post("/v1/api/iserver/auth/ssodh/init")
    async def ssodh_init(request: Request) -> dict[str, Any]:
        record = session(request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _ibkr_error(400, 'Bad Request: body must be JSON like {"publish": true, "compete": true}')
        state.init_brokerage(record, compete=bool(body.get("compete", False)))
        return auth_status(record)

    @app.api_route("/v1/api/tickle", methods=["GET", "POST"])
    def tickle(request: Request) -> dict[str, Any]:
        record = session(request)
        return {
            "session": record.public_id,
            "ssoExpires": int(settings.sso_idle_timeout * 1000),
            "collission": False,
            "userId": SANDBOX_USER_ID,
            "hmds": {"error": "no bridge"},
            "iserver": {"authStatus": auth_status(record)},
        }

    @app.post("/v1/api/logout")
    def logout(request: Request) -> dict[str, Any]:
        record = session(request)
        state.end_session(record.session_id)
        return {"status": True}

    @app.get("/v1/api/iserver/accounts")
    def iserver_accounts(request: Request) -> dict[str, Any]:
        record = brokerage(request)
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
            "isPaper": all(book[a].paper for a in accounts),
        }

    # ------------------------------------------------------------------ orders
    def trading(request: Request, account_id: str | None = None) -> SsoSessionRecord:
        """IBKR: /iserver/accounts "must be called before modifying an order or querying open orders"."""
        record = brokerage(request)
        if not record.iserver_accounts_queried:
            raise _ibkr_error(500, "Please query /accounts first")
        if account_id is not None and account_id not in state.credentials.get(record.credential, []):
            raise _ibkr_error(400, f"Bad Request: accountId is not valid: {account_id}")
        return record

    async def order_list(request: Request) -> list[Any]:
        try:
            body = await request.json()
        except ValueError:
            raise _ibkr_error(400, "Bad Request: body must be JSON") from None
        orders = body.get("orders") if isinstance(body, dict) else body
        if not isinstance(orders, list):
            raise _ibkr_error(400, 'Bad Request: send {"orders": [...]} or a JSON array of orders')
        return orders

    @app.post("/v1/api/iserver/account/{account_id}/orders")
    async def place_orders(request: Request, account_id: str) -> Any:
        record = trading(request, account_id)
        orders = await order_list(request)
        rules = [PromptRule(**rule) for rule in settings.prompt_rules]
        with state.lock:
            if settings.one_question_per_session:
                state.counters["questions_superseded"] += state.orders.supersede_questions(record.credential)
            answer = state.orders.submit(state.book, record.credential, account_id, orders, rules)
            if isinstance(answer, list):
                state.counters["orders_placed"] += sum(1 for a in answer if "order_id" in a)
            return answer

    @app.post("/v1/api/iserver/account/{account_id}/orders/whatif")
    async def whatif(request: Request, account_id: str) -> Any:
        trading(request, account_id)
        orders = await order_list(request)
        with state.lock:
            state.counters["whatif_requests"] += 1
            return state.orders.whatif(state.book, account_id, orders)

    @app.post("/v1/api/iserver/reply/{reply_id}")
    async def reply(request: Request, reply_id: str) -> Any:
        trading(request)
        body = await request.json()
        confirmed = bool(body.get("confirmed")) if isinstance(body, dict) else False
        with state.lock:
            state.counters["order_replies"] += 1
            if not confirmed:
                state.counters["replies_declined"] += 1
            status, answer = state.orders.reply(state.book, reply_id, confirmed)
            if status != 200:
                raise SandboxHttpError(status, answer)
            if isinstance(answer, list):
                state.counters["orders_placed"] += sum(1 for a in answer if "order_id" in a)
            return answer

    @app.get("/v1/api/iserver/account/orders")
    def live_orders(request: Request) -> dict[str, Any]:
        record = trading(request)
        accounts = set(state.credentials.get(record.credential, []))
        with state.lock:
            rows = [
                o.as_live_order(state.book) for o in state.orders.orders.values() if o.account in accounts
            ]
        return {"orders": rows, "snapshot": True}

    @app.get("/v1/api/iserver/account/order/status/{order_id}")
    def order_status(request: Request, order_id: int) -> dict[str, Any]:
        record = trading(request)
        with state.lock:
            order = state.orders.orders.get(order_id)
            if order is None or order.account not in state.credentials.get(record.credential, []):
                raise _ibkr_error(400, f"Bad Request: order {order_id} not found")
            row = order.as_live_order(state.book)
        return {
            "order_id": order_id,
            "conid": order.conid,
            "order_status": order.status,
            "side": order.side[0],
            "size": f"{order.quantity:g}",
            "cum_fill": f"{order.filled:g}",
            "average_price": row["avgPrice"],
            "order_type": row["orderType"],
            "account": order.account,
            "order_ref": order.coid,
        }

    @app.delete("/v1/api/iserver/account/{account_id}/order/{order_id}")
    def cancel_order(request: Request, account_id: str, order_id: int) -> dict[str, Any]:
        trading(request, account_id)
        with state.lock:
            answer = state.orders.cancel(account_id, order_id)
        if answer is None:
            raise _ibkr_error(400, f"Bad Request: order {order_id} not found in {account_id}")
        return answer

    # ------------------------------------------------------------------ contracts and market data
    @app.get("/v1/api/iserver/secdef/search")
    def secdef_search(request: Request, symbol: str = "", name: bool = False, secType: str = "") -> Any:
        brokerage(request)
        wanted = symbol.strip().upper()
        if not wanted:
            raise _ibkr_error(400, "Bad Request: symbol required")
        matches = [
            i
            for i in state.book.instruments.values()
            if (i.symbol == wanted or (name and wanted in i.name))
            and (not secType or secType == i.asset_class)
        ]
        return [
            {
                "conid": str(i.conid),
                "companyHeader": f"{i.name} - {i.exchange}",
                "companyName": i.name,
                "symbol": i.symbol,
                "description": i.exchange,
                "restricted": None,
                "fop": None,
                "opt": None,
                "war": None,
                "sections": [{"secType": i.asset_class, "exchange": i.exchange}],
            }
            for i in matches
        ]

    @app.get("/v1/api/iserver/marketdata/snapshot")
    def snapshot(request: Request, conids: str = "", fields: str = "") -> list[dict[str, Any]]:
        """IBKR: "A pre-flight request must be made prior to ever receiving data": the first
        request for a conid in a session answers without fields."""
        record = brokerage(request)
        if not record.iserver_accounts_queried:
            raise _ibkr_error(500, "Please query /accounts first")
        try:
            ids = [int(c) for c in conids.split(",") if c.strip()]
        except ValueError:
            raise _ibkr_error(400, "Bad Request: conids must be integers") from None
        rows = []
        for conid in ids:
            row: dict[str, Any] = {"conid": conid, "conidEx": str(conid)}
            instrument = state.book.instruments.get(conid)
            if instrument is not None and conid in record.subscribed:
                price = instrument.last_price
                values = {
                    "31": f"{price:.2f}",
                    "84": f"{price - 0.01:.2f}",
                    "86": f"{price + 0.01:.2f}",
                    "85": "600",
                    "88": "1,300",
                    "7059": "100",
                    "55": instrument.symbol,
                    "6509": "RpB",
                    "7295": f"{price * 0.995:.2f}",
                    "7741": f"{price * 0.99:.2f}",
                }
                wanted = [f.strip() for f in fields.split(",") if f.strip()] or list(values)
                row.update({f: values[f] for f in wanted if f in values})
                row.update({"_updated": int(time.time() * 1000), "server_id": "q0"})
            record.subscribed.add(conid)
            rows.append(row)
        return rows

    @app.get("/v1/api/iserver/account/trades")
    def trades(request: Request, days: int = 1, accountId: str = "") -> list[dict[str, Any]]:
        """Executions (filled sandbox orders) of the last ``days`` days (IBKR: at most 7)."""
        record = trading(request)
        accounts = set(state.credentials.get(record.credential, []))
        since = time.time() - min(max(days, 1), 7) * 86_400
        rows = []
        with state.lock:
            for o in state.orders.orders.values():
                if o.status != "Filled" or o.account not in accounts or o.created_at < since:
                    continue
                if accountId and o.account != accountId:
                    continue
                inst = state.book.instruments[o.conid]
                verb = "Bot" if o.side == "BUY" else "Sold"
                rows.append(
                    {
                        "execution_id": f"0000e0d5.{o.order_id:08x}.01.01",
                        "symbol": inst.symbol,
                        "side": o.side[0],
                        "order_description": f"{verb} {o.filled:g} @ {o.avg_price}",
                        "trade_time_r": int(o.created_at * 1000),
                        "size": o.filled,
                        "price": f"{o.avg_price}",
                        "order_ref": o.coid,
                        "commission": "1.00",
                        "net_amount": round(o.filled * (o.avg_price or 0), 2),
                        "account": o.account,
                        "conid": str(o.conid),
                        "sec_type": inst.asset_class,
                        "listing_exchange": inst.exchange,
                        "company_name": inst.name,
                    }
                )
        return rows

    @app.get("/v1/api/iserver/account/pnl/partitioned")
    def pnl(request: Request) -> dict[str, Any]:
        """Daily PnL per account (``<id>.Core``): prices against a prior close 1% lower."""
        record = brokerage(request)
        rows: dict[str, Any] = {}
        for account_id in state.credentials.get(record.credential, []):
            account = state.book.accounts[account_id]
            values = [(state.book.instruments[p.conid].last_price, p) for p in account.positions]
            market = sum(price * p.quantity for price, p in values)
            daily = sum((price - round(price / 1.01, 2)) * p.quantity for price, p in values)
            net = market + account.cash
            rows[f"{account_id}.Core"] = {
                "rowType": 1,
                "dpl": round(daily, 2),
                "nl": round(net, 2),
                "upl": round(sum((price - p.avg_cost) * p.quantity for price, p in values), 2),
                "el": round(net - market * 0.25, 2),
                "mv": round(market, 2),
            }
        return {"upnl": rows}

    # ------------------------------------------------------------------ portfolio
    @app.get("/v1/api/portfolio/accounts")
    def portfolio_accounts(request: Request) -> list[dict[str, Any]]:
        record = session(request)
        record.portfolio_accounts_queried = True
        return [portfolio.account_json(state.book.accounts[a]) for a in state.credentials[record.credential]]

    @app.get("/v1/api/portfolio/{account_id}/summary")
    def summary(request: Request, account_id: str) -> dict[str, Any]:
        account = account_for(session(request), account_id)
        return portfolio.summary_json(state.book, account)

    @app.get("/v1/api/portfolio/{account_id}/ledger")
    def ledger(request: Request, account_id: str) -> dict[str, Any]:
        account = account_for(session(request), account_id)
        return portfolio.ledger_json(state.book, account)

    @app.get("/v1/api/portfolio/{account_id}/positions/{page}")
    def positions(request: Request, account_id: str, page: int) -> list[dict[str, Any]]:
        account = account_for(session(request), account_id)
        if page < 0:
            raise _ibkr_error(400, "Bad Request: pageId must be >= 0")
        return portfolio.positions_page(state.book, account, page)

    # ------------------------------------------------------------------ control plane
    @app.get("/__sandbox__/health")
    def health() -> dict[str, Any]:
        return {
            "ok": True,
            "mode": "gateway" if settings.gateway else "oauth1a" if settings.oauth1a else "oauth2",
        }

    @app.post("/__sandbox__/oauth1/expire-lst")
    def expire_lst() -> dict[str, Any]:
        """Make every current live session token invalid: the next request answers 410 Gone."""
        if state.oauth1 is None:
            raise _ibkr_error(400, "the sandbox serves no OAuth 1.0a (gateway mode)")
        with state.lock:
            expired = state.oauth1.expire_tokens()
        return {"expired": len(expired)}

    @app.get("/__sandbox__/stats")
    def stats() -> dict[str, Any]:
        return state.stats()

    @app.post("/__sandbox__/reset")
    def reset() -> dict[str, Any]:
        state.reset()
        return {"ok": True}

    @app.post("/__sandbox__/prices")
    async def set_price(request: Request) -> dict[str, Any]:
        """Move an instrument's price, now or ``after`` seconds; resting limit orders fill when
        it crosses their limit."""
        body = await request.json()
        try:
            conid, price = int(body["conid"]), float(body["price"])
            after = float(body.get("after") or 0)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise _ibkr_error(
                400, 'send {"conid": <int>, "price": <number>, "after": <seconds, optional>}'
            ) from None
        if conid not in state.book.instruments or price <= 0:
            raise _ibkr_error(400, f"unknown conid {conid} or non-positive price")
        if after > 0:
            with state.lock:
                state.price_moves.append((time.time() + after, conid, price))
        else:
            state.set_price(conid, price)
        return {"conid": conid, "price": price, "after": after}

    @app.get("/__sandbox__/market")
    def market(conids: str = "") -> dict[str, Any]:
        """The current tick and prices (of ``conids``, comma separated, or every instrument)."""
        try:
            wanted = [int(c) for c in conids.split(",") if c.strip()]
        except ValueError:
            raise _ibkr_error(400, "conids must be comma-separated integers") from None
        with state.lock:
            tick = state.advance_market()
            instruments = state.book.instruments
            chosen = wanted or list(instruments)
            prices = {str(c): instruments[c].last_price for c in chosen if c in instruments}
        return {"tick": tick, "prices": prices}

    @app.post("/__sandbox__/market")
    async def step_market(request: Request) -> dict[str, Any]:
        """Move the market ``{"ticks": n}`` ticks ahead now (n >= 1)."""
        body = await request.json()
        try:
            ticks = int(body["ticks"])
        except (KeyError, TypeError, ValueError):
            raise _ibkr_error(400, 'send {"ticks": <positive integer>}') from None
        if ticks < 1:
            raise _ibkr_error(400, "ticks must be at least 1")
        return {"tick": state.step_market(ticks)}

    @app.post("/__sandbox__/sessions/drop-brokerage")
    def drop_brokerage() -> dict[str, Any]:
        """Drop every brokerage session (as IBKR's nightly reset does); SSO sessions stay."""
        with state.lock:
            for record in state.sessions.values():
                record.brokerage = False
                record.iserver_accounts_queried = False
                record.subscribed.clear()
            state.brokerage_holder.clear()
        return {"ok": True}

    @app.get("/__sandbox__/config")
    def get_config() -> dict[str, Any]:
        return dataclasses.asdict(settings)

    @app.post("/__sandbox__/config")
    async def set_config(request: Request) -> dict[str, Any]:
        body = await request.json()
        if not isinstance(body, dict):
            raise _ibkr_error(400, "config must be a JSON object")
        with state.lock:
            try:
                settings.update(body)
            except ValueError as exc:
                raise _ibkr_error(400, str(exc)) from None
        return dataclasses.asdict(settings)

    @app.get("/__sandbox__/faults")
    def list_faults() -> list[dict[str, Any]]:
        return [dataclasses.asdict(f) for f in state.faults]

    @app.post("/__sandbox__/faults")
    async def add_fault(request: Request) -> dict[str, Any]:
        body = await request.json()
        try:
            fault = Fault(
                path=str(body["path"]),
                kind=str(body["kind"]),
                remaining=int(body.get("count", 1)),
                method=body.get("method"),
                retry_after=body.get("retry_after"),
                delay=float(body.get("delay", 0.0)),
                body=body.get("body"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _ibkr_error(400, f"fault needs path and kind: {exc}") from None
        kinds = ("drop", "drop_after", "delay", "stale", "401", "410", "429", "500", "502", "503", "504")
        if fault.kind not in kinds:
            raise _ibkr_error(400, f"kind must be one of {', '.join(kinds)}")
        if fault.kind == "stale" and fault.body is None:
            raise _ibkr_error(400, 'a stale fault needs the "body" to answer with')
        with state.lock:
            state.faults.append(fault)
        return dataclasses.asdict(fault)

    @app.delete("/__sandbox__/faults")
    def clear_faults() -> dict[str, Any]:
        with state.lock:
            state.faults.clear()
        return {"ok": True}

    return SandboxControl(app, state)
