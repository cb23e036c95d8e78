"""IBKR's logins: OAuth 2.0 (client assertion -> access token -> SSO session), the OAuth 1.0a live
session token, and the three-legged OAuth 1.0a consent (request token, authorize page, access
token)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ibkr_sandbox.consent import ConsentBroker, consent_page
from ibkr_sandbox.oauth import TOKEN_AUDIENCE, JwtRejected, verify_client_assertion, verify_sso_jwt
from ibkr_sandbox.oauth1 import OAuth1Rejected
from ibkr_sandbox.routes.authorize import assertion_audiences, user_tokens
from ibkr_sandbox.routes.common import (
    Gate,
    bearer,
    consent_decision,
    ibkr_error,
    oauth_error,
    signed_url,
)

T = TypeVar("T")

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def login_router(gate: Gate) -> APIRouter:
    router = APIRouter()
    state, settings = gate.state, gate.settings

    @router.post("/oauth2/api/v1/token")
    async def token(request: Request) -> dict[str, Any]:
        state.counters.add("token_requests")
        if settings.gateway:
            raise ibkr_error(404, "Not Found")
        form = await request.form()
        grant = form.get("grant_type")
        if grant not in ("client_credentials", "authorization_code", "refresh_token"):
            raise oauth_error(
                400,
                "unsupported_grant_type",
                "grant_type must be client_credentials, authorization_code or refresh_token",
            )
        if form.get("client_assertion_type") != JWT_BEARER:
            raise oauth_error(400, "invalid_request", f"client_assertion_type must be {JWT_BEARER}")
        scope = str(form.get("scope") or "")
        if grant == "client_credentials" and "sso-sessions.write" not in scope.split():
            raise oauth_error(400, "invalid_scope", "scope must include sso-sessions.write")
        assertion = form.get("client_assertion")
        if not isinstance(assertion, str) or not assertion:
            raise oauth_error(400, "invalid_request", "client_assertion is required")
        try:
            claims = verify_client_assertion(
                assertion,
                state.client_keys,
                leeway=settings.clock_skew,
                max_lifetime=settings.max_assertion_lifetime,
                audiences=assertion_audiences(request)
                if grant != "client_credentials"
                else (TOKEN_AUDIENCE,),
            )
        except JwtRejected as exc:
            raise oauth_error(exc.status, exc.error, exc.description) from None
        client_id = str(claims["iss"])
        form_client = form.get("client_id")
        if form_client and form_client != client_id:
            raise oauth_error(401, "invalid_client", "client_id does not match the assertion issuer")
        if grant != "client_credentials":
            return user_tokens(state, form, claims)
        access, lifetime = state.issue_access_token(client_id)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "scope": "sso-sessions.write",
            "expires_in": int(lifetime),
        }

    @router.post("/gw/api/v1/sso-sessions")
    async def sso_sessions(request: Request) -> dict[str, Any]:
        if settings.gateway:
            raise ibkr_error(404, "Not Found")
        token_record = state.access_token(bearer(request) or "")
        if token_record is None:
            raise oauth_error(401, "invalid_token", "access token missing, unknown or expired")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/jwt":
            raise oauth_error(415, "invalid_request", "Content-Type must be application/jwt")
        body = (await request.body()).decode(errors="replace").strip()
        try:
            claims = verify_sso_jwt(
                body,
                state.client_keys,
                client_id=token_record.client_id,
                leeway=settings.clock_skew,
                user=token_record.username,
            )
        except JwtRejected as exc:
            raise oauth_error(exc.status, exc.error, exc.description) from None
        if claims["credential"] not in state.credentials:
            raise oauth_error(403, "access_denied", "credential is not a username this client may act for")
        record = state.open_sso_session(token_record, claims["credential"], claims["ip"])
        if token_record.username is not None:
            state.counters.add("user_sso_sessions")
        return {"active": True, "access_token": record.session_id, "token_type": "Bearer"}

    # ------------------------------------------------------------------ OAuth 1.0a
    @router.post("/v1/api/oauth/live_session_token")
    def live_session_token(request: Request) -> dict[str, Any]:
        verifier = state.oauth1
        if verifier is None:
            raise ibkr_error(404, "Not Found")
        with state.lock:
            try:
                consumer, lst, answer = verifier.live_session_token(
                    request.method,
                    signed_url(request),
                    request.headers.get("authorization", ""),
                    request.scope.get("sandbox.arrival"),
                )
            except OAuth1Rejected as exc:
                raise gate.rejected(exc) from None
            expires_at = answer["live_session_token_expiration"] / 1000
            state.open_oauth1_session(consumer.credential, lst, expires_at, replaces=consumer.tokens[:-1])
        return answer

    # ------------------------------------------------------------------ OAuth 1.0a three-legged
    def consent_broker() -> ConsentBroker:
        if state.consent is None:
            raise ibkr_error(404, "Not Found")
        return state.consent

    def consent_step(request: Request, counter: str, step: Callable[[ConsentBroker, str, str, str], T]) -> T:
        """A signed step of the consent (request token, access token), counted when accepted."""
        broker = consent_broker()
        with state.lock:
            try:
                header = request.headers.get("authorization", "")
                answer = step(broker, request.method, signed_url(request), header)
            except OAuth1Rejected as exc:
                raise gate.rejected(exc) from None
            state.counters.add(counter)
        return answer

    @router.post("/v1/api/oauth/request_token")
    def request_token(request: Request) -> dict[str, Any]:
        return {"oauth_token": consent_step(request, "request_tokens", ConsentBroker.request_token)}

    @router.post("/v1/api/oauth/access_token")
    def access_token(request: Request) -> dict[str, Any]:
        return consent_step(request, "access_tokens", ConsentBroker.access_token)

    @router.get("/authorize", response_class=HTMLResponse)
    def authorize_page(oauth_token: str = "") -> HTMLResponse:
        broker = consent_broker()
        with state.lock:
            known = broker.is_pending(oauth_token)
        if not known:
            return HTMLResponse(
                consent_page(None, "This authorization request is unknown or has expired."), 400
            )
        return HTMLResponse(consent_page(oauth_token, None))

    @router.post("/authorize")
    async def authorize_decision(request: Request) -> Response:
        return await consent_decision(
            request, state, consent_broker(), field="oauth_token", counter="consents"
        )

    return router
