"""OAuth 2.0 authorization code at the sandbox (:mod:`ibkr_sandbox.authcode`): the metadata, the
authorize page, the user grants of the token endpoint, and revocation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ibkr_sandbox.authcode import AuthorizationServer, AuthorizeError, GrantRejected, metadata
from ibkr_sandbox.consent import consent_page
from ibkr_sandbox.oauth import TOKEN_AUDIENCE, JwtRejected, verify_client_assertion
from ibkr_sandbox.routes.common import Gate, consent_decision, ibkr_error, oauth_error
from ibkr_sandbox.state import SandboxState

TOKEN_PATH = "/oauth2/api/v1/token"


def issuer_of(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def assertion_audiences(request: Request) -> tuple[str, ...]:
    """What a user grant's client assertion may name as ``aud``: the token endpoint's URL (RFC
    7523 3), the issuer, or IBKR's ``/token``."""
    return (issuer_of(request) + TOKEN_PATH, issuer_of(request), TOKEN_AUDIENCE)


def server_of(state: SandboxState) -> AuthorizationServer:
    if state.authcode is None:
        raise ibkr_error(404, "Not Found")
    return state.authcode


def user_tokens(state: SandboxState, form: Any, claims: dict[str, Any]) -> dict[str, Any]:
    """``authorization_code`` and ``refresh_token`` grants, the client already authenticated."""
    server = server_of(state)
    client_id = str(claims["iss"])
    grant = form.get("grant_type")
    with state.lock:
        try:
            server.note_jti(claims.get("jti"), float(claims["exp"]))
            if grant == "authorization_code":
                family = server.exchange(
                    client_id,
                    str(form.get("code") or ""),
                    str(form.get("redirect_uri") or ""),
                    str(form.get("code_verifier") or ""),
                    lifetime=state.settings.code_lifetime,
                )
                state.counters.add("codes_exchanged")
            else:
                family = server.refresh(client_id, str(form.get("refresh_token") or ""))
                state.counters.add("refreshes")
        except GrantRejected as exc:
            state.counters.add("grants_refused")
            raise oauth_error(exc.status, exc.error, exc.description) from None
        access, lifetime = state.issue_access_token(client_id, family.username, family.family_id)
        family.access_tokens.append(access)
        refresh = server.new_refresh_token(family)
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": int(lifetime),
        "refresh_token": refresh,
        "scope": family.scope or "sso-sessions.write",
    }


def authorize_router(gate: Gate) -> APIRouter:
    router = APIRouter()
    state = gate.state

    @router.get("/.well-known/oauth-authorization-server")
    def discovery(request: Request) -> dict[str, object]:
        server_of(state)
        return metadata(issuer_of(request))

    @router.get("/oauth2/authorize", response_class=HTMLResponse)
    def authorize_page(request: Request) -> Response:
        server = server_of(state)
        with state.lock:
            try:
                request_id, redirect = server.start(
                    dict(request.query_params), state.settings.registered_redirect_uris
                )
            except AuthorizeError as exc:
                return HTMLResponse(consent_page(None, str(exc)), 400)
        if request_id is None:
            return RedirectResponse(redirect, status_code=303)
        return HTMLResponse(consent_page(request_id, None, field="request_id"))

    @router.post("/oauth2/authorize")
    async def authorize_decision(request: Request) -> Response:
        return await consent_decision(
            request, state, server_of(state), field="request_id", counter="code_consents"
        )

    @router.post("/oauth2/api/v1/revoke")
    async def revoke(request: Request) -> dict[str, Any]:
        """RFC 7009: 200 whether or not the token was known; the client must authenticate."""
        server = server_of(state)
        form = await request.form()
        try:
            claims = verify_client_assertion(
                str(form.get("client_assertion") or ""),
                state.client_keys,
                leeway=state.settings.clock_skew,
                max_lifetime=state.settings.max_assertion_lifetime,
                audiences=assertion_audiences(request),
            )
        except JwtRejected as exc:
            raise oauth_error(exc.status, exc.error, exc.description) from None
        with state.lock:
            try:
                server.note_jti(claims.get("jti"), float(claims["exp"]))
            except GrantRejected as exc:
                raise oauth_error(exc.status, exc.error, exc.description) from None
            for token in server.revoke(str(claims["iss"]), str(form.get("token") or "")):
                state.access_tokens.pop(token, None)
            state.counters.add("revocations")
        return {}

    return router
