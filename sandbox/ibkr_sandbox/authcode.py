"""The sandbox as an OAuth 2.0 authorization server: the authorization-code flow with PKCE and
``private_key_jwt``, refresh-token rotation and revocation, built to the RFCs because IBKR has
not published its own (reference: IBKR Web API notes, section 12).

- RFC 8414 metadata at ``/.well-known/oauth-authorization-server``;
- authorize (RFC 6749 4.1, RFC 7636): ``response_type=code``, a registered client, an http(s)
  ``redirect_uri`` (or one of ``registered_redirect_uris`` when set), a S256 challenge always;
  a login + consent page with Allow and Deny; Deny redirects with ``error=access_denied``;
- codes: good once, for 60 s (setting ``code_lifetime``), only with the same ``redirect_uri``
  and the PKCE verifier; a second use revokes what the first one issued (RFC 6749 4.1.2);
- client authentication (RFC 7523): the assertion's signature, ``iss`` = ``sub`` = client,
  ``aud`` the token endpoint's URL, the issuer or IBKR's ``/token``, its time window, and a
  ``jti`` never seen before;
- refresh tokens rotate on every use; presenting a spent one revokes its whole family (every
  refresh and access token descended from the consent), as OAuth 2.0 Security BCP 4.14 asks;
- revocation (RFC 7009): a refresh token revokes its family, an access token itself; always 200.

Access tokens issued here name their user, so ``/gw/api/v1/sso-sessions`` opens the session
for that user (a ``credential`` claim, when sent, must match it).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field

#: How long the login page waits for the user.
REQUEST_LIFETIME = 600.0


class AuthorizeError(Exception):
    """The authorize request cannot redirect back (unknown client, bad redirect URI): a page."""


class GrantRejected(Exception):
    """A token or revocation request is refused: ``error`` is the OAuth error code."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass
class AuthRequest:
    client_id: str
    redirect_uri: str
    scope: str
    state: str
    challenge: str
    created: float


@dataclass
class IssuedCode:
    client_id: str
    redirect_uri: str
    challenge: str
    username: str
    scope: str
    created: float
    used: bool = False
    family: str | None = None


@dataclass
class Family:
    """Everything one consent issued: revoked together."""

    family_id: str
    client_id: str
    username: str
    scope: str
    revoked: bool = False
    refresh_tokens: dict[str, bool] = field(default_factory=dict)  # token -> spent
    access_tokens: list[str] = field(default_factory=list)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class AuthorizationServer:
    """Consents, codes and token families; callers hold the sandbox's lock."""

    #: client id -> {kid -> public key PEM} (the sandbox's registered apps)
    client_keys: dict[str, dict[str, str]]
    #: username -> password of the users who may log in on the authorize page
    users: dict[str, str]
    requests: dict[str, AuthRequest] = field(default_factory=dict)
    codes: dict[str, IssuedCode] = field(default_factory=dict)
    families: dict[str, Family] = field(default_factory=dict)
    #: refresh token -> its family id
    refresh_index: dict[str, str] = field(default_factory=dict)
    #: assertion ids seen -> when they may be forgotten (their exp)
    jtis: dict[str, float] = field(default_factory=dict)

    def reset(self) -> None:
        for table in (self.requests, self.codes, self.families, self.refresh_index, self.jtis):
            table.clear()

    # ------------------------------------------------------------------ authorize
    def start(self, params: dict[str, str], registered: list[str]) -> tuple[str | None, str]:
        """An authorize request: (request id for the login page, "") or (None, redirect URL
        carrying the error). Raises :class:`AuthorizeError` when it cannot redirect back."""
        client_id, redirect_uri = params.get("client_id", ""), params.get("redirect_uri", "")
        if client_id not in self.client_keys:
            raise AuthorizeError(f"Unknown client_id {client_id!r}.")
        if not redirect_uri.startswith(("https://", "http://")) or (
            registered and redirect_uri not in registered
        ):
            raise AuthorizeError("The redirect_uri is missing or not registered for this client.")
        state = params.get("state", "")

        def back(error: str, description: str) -> tuple[None, str]:
            return None, with_query(
                redirect_uri, {"error": error, "error_description": description, "state": state}
            )

        if params.get("response_type") != "code":
            return back("unsupported_response_type", "response_type must be code")
        challenge = params.get("code_challenge", "")
        if params.get("code_challenge_method") != "S256" or not 43 <= len(challenge) <= 128:
            return back("invalid_request", "PKCE is required: code_challenge with code_challenge_method S256")
        request_id = secrets.token_urlsafe(16)
        self.requests[request_id] = AuthRequest(
            client_id, redirect_uri, params.get("scope", ""), state, challenge, time.time()
        )
        return request_id, ""

    def is_pending(self, request_id: str) -> bool:
        request = self.requests.get(request_id)
        return request is not None and time.time() - request.created < REQUEST_LIFETIME

    def decide(self, request_id: str, username: str, password: str, accept: bool) -> str:
        """The login page's answer: the redirect URL back to the app, or ``ValueError`` with the
        text the page shows."""
        if not self.is_pending(request_id):
            raise ValueError(
                "This authorization request is unknown or has expired. Start again from the app."
            )
        request = self.requests[request_id]
        if not accept:
            del self.requests[request_id]
            return with_query(
                request.redirect_uri,
                {
                    "error": "access_denied",
                    "error_description": "the user denied access",
                    "state": request.state,
                },
            )
        if not password or self.users.get(username) != password:
            raise ValueError("Invalid username or password.")
        del self.requests[request_id]
        code = secrets.token_urlsafe(24)
        self.codes[code] = IssuedCode(
            request.client_id, request.redirect_uri, request.challenge, username, request.scope, time.time()
        )
        return with_query(request.redirect_uri, {"code": code, "state": request.state})

    # ------------------------------------------------------------------ token endpoint
    def note_jti(self, jti: object, expires: float) -> None:
        """RFC 7523 3: an assertion is used once."""
        now = time.time()
        for seen in [j for j, until in self.jtis.items() if until < now - 600]:
            del self.jtis[seen]
        if not isinstance(jti, str) or not jti:
            raise GrantRejected("invalid_client", "the client assertion needs a 'jti' claim", 401)
        if jti in self.jtis:
            raise GrantRejected("invalid_client", "the client assertion was used before (jti replay)", 401)
        self.jtis[jti] = expires

    def exchange(
        self, client_id: str, code: str, redirect_uri: str, verifier: str, *, lifetime: float
    ) -> Family:
        """``grant_type=authorization_code``: the code's family (a new one), checked."""
        issued = self.codes.get(code)
        if issued is None or issued.client_id != client_id:
            raise GrantRejected("invalid_grant", "unknown authorization code")
        if issued.used:
            if issued.family is not None:  # RFC 6749 4.1.2: revoke what the first use got
                self.revoke_family(issued.family)
            raise GrantRejected("invalid_grant", "the authorization code was used before")
        if time.time() - issued.created > lifetime:
            raise GrantRejected("invalid_grant", f"the authorization code expired ({lifetime:g} s)")
        if redirect_uri != issued.redirect_uri:
            raise GrantRejected("invalid_grant", "redirect_uri differs from the authorization request's")
        if not secrets.compare_digest(s256(verifier), issued.challenge):
            raise GrantRejected("invalid_grant", "code_verifier does not match the code_challenge (PKCE)")
        issued.used = True
        family_id = secrets.token_hex(8)
        issued.family = family_id
        family = Family(family_id, client_id, issued.username, issued.scope)
        self.families[family_id] = family
        return family

    def refresh(self, client_id: str, token: str) -> Family:
        """``grant_type=refresh_token``: the family of a live refresh token, which is spent now;
        a spent one revokes the family."""
        family_id = self.refresh_index.get(token)
        family = self.families.get(family_id or "")
        if family is None or family.client_id != client_id:
            raise GrantRejected("invalid_grant", "unknown refresh token")
        if family.revoked:
            raise GrantRejected("invalid_grant", "the refresh token was revoked")
        if family.refresh_tokens.get(token):
            self.revoke_family(family_id or "")
            raise GrantRejected(
                "invalid_grant", "the refresh token was used before: its whole grant is revoked"
            )
        family.refresh_tokens[token] = True
        return family

    def new_refresh_token(self, family: Family) -> str:
        token = secrets.token_urlsafe(32)
        family.refresh_tokens[token] = False
        self.refresh_index[token] = family.family_id
        return token

    def revoke_family(self, family_id: str) -> list[str]:
        """Revoke a family; returns its access tokens for the caller to drop."""
        family = self.families.get(family_id)
        if family is None:
            return []
        family.revoked = True
        return list(family.access_tokens)

    def revoke(self, client_id: str, token: str) -> list[str]:
        """RFC 7009: the access tokens to drop (a refresh token's family's, or the token)."""
        family_id = self.refresh_index.get(token)
        family = self.families.get(family_id or "")
        if family is not None and family.client_id == client_id:
            return self.revoke_family(family_id or "")
        return [token]


def with_query(url: str, params: dict[str, str]) -> str:
    separator = "&" if "?" in url else "?"
    return url + separator + urllib.parse.urlencode({k: v for k, v in params.items() if v})


def metadata(base_url: str) -> dict[str, object]:
    """RFC 8414 metadata; the issuer is the sandbox's base URL."""
    return {
        "issuer": base_url,
        "authorization_endpoint": f"{base_url}/oauth2/authorize",
        "token_endpoint": f"{base_url}/oauth2/api/v1/token",
        "revocation_endpoint": f"{base_url}/oauth2/api/v1/revoke",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        "revocation_endpoint_auth_methods_supported": ["private_key_jwt"],
        "scopes_supported": ["sso-sessions.write"],
    }
