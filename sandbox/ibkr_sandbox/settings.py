"""The sandbox's behaviour knobs: each is a command-line flag and a key of
``POST /__sandbox__/config``, and ``/__sandbox__/reset`` restores the values it started with."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ibkr_sandbox.pacing import GATEWAY_GLOBAL_PER_SECOND, OAUTH_GLOBAL_PER_SECOND


@dataclass
class SandboxSettings:
    """Behaviour knobs; each is a CLI flag and a key of ``POST /__sandbox__/config``."""

    #: Also bounds the SSO sessions opened with the token (a modelling choice: IBKR does not
    #: document the bearer's lifetime, and the client renews the whole chain before it).
    access_token_lifetime: float = 3600.0
    #: IBKR's maximum client-assertion lifetime is UNCONFIRMED; working clients use 20-600 s.
    max_assertion_lifetime: float = 600.0
    clock_skew: float = 30.0
    #: Observed ssoExpires of ~10 minutes, reset by activity (ibind's tickle fixture; ibeam issues #19, #254).
    sso_idle_timeout: float = 600.0
    gateway: bool = False
    #: Self-service OAuth 1.0a instead of OAuth 2.0 (a mode, like ``gateway``).
    oauth1a: bool = False
    #: OAuth 1.0a: how long a live session token lives (IBKR: about 24 h).
    lst_lifetime: float = 86_400.0
    #: OAuth 1.0a: how many seconds a timestamp may fall behind the newest one seen (requests of
    #: several processes can arrive a little out of order; IBKR's allowance is UNCONFIRMED).
    oauth1_timestamp_tolerance: float = 5.0
    #: OAuth 1.0a: how query parameters are signed: guide (IBKR's guide), ignore or url.
    oauth1_query_signing: str = "guide"
    #: Global requests per second per username; None picks IBKR's (50 OAuth, 10 gateway).
    rate_limit: float | None = None
    #: Enforce IBKR's per-endpoint table (e.g. 1 request per 5 s for /portfolio/accounts).
    endpoint_limits: bool = True
    #: IBKR puts violators in a 10-15 minute penalty box; shortened for a dev sandbox.
    penalty_seconds: float = 15.0
    #: Send Retry-After with 429 answers (whether IBKR does is UNCONFIRMED).
    retry_after_header: bool = True
    #: Confirmation prompts: [{"message_id", "text", "when": always|market|notional_over, "threshold"}].
    prompt_rules: list[dict[str, Any]] = field(default_factory=list)
    #: A new order replaces the session's open confirmation question, whose reply id then
    #: answers "reply id not found" (UNCONFIRMED model of the race in ibind issues #35, #103).
    one_question_per_session: bool = True
    #: OAuth 2.0 authorization code: the redirect URIs clients may use (empty: any http(s) URI,
    #: and the token request must repeat the authorize request's exactly).
    registered_redirect_uris: list[str] = field(default_factory=list)
    #: A financial advisor's login, ``sandboxadvisor``, with this many sub-accounts (0: none).
    advisor_subaccounts: int = 0
    #: OAuth 2.0 authorization code: how long a code is good for (seconds).
    code_lifetime: float = 60.0
    #: OAuth 2.0 authorization code: access-token lifetime of user grants (None: as the app's).
    user_token_lifetime: float | None = None
    #: Flex: GetStatement answers 1019 this many times per reference code before the report.
    flex_pending_polls: int = 2
    #: Flex: the valid token has expired (SendRequest answers 1012 "Token has expired.").
    flex_token_expired: bool = False
    #: Flex: a token polling again within this many seconds gets 1018 (IBKR's limit is UNCONFIRMED).
    flex_min_interval: float = 1.0
    #: Flex: the day a report without explicit dates covers (``YYYYMMDD``; None: today, UTC), so a
    #: test can make the next day's report appear.
    flex_report_date: str | None = None
    #: What-if answers carry this ``warn`` text (IBKR's margin and price warnings), e.g.
    #: "21/The order would exceed the account's available funds"; None: no warning.
    whatif_warning: str | None = None
    #: Flex: the scheme and host SendRequest's statement URL names (None: the sandbox's own), to
    #: test that a client refuses to send its token elsewhere.
    flex_statement_base: str | None = None
    #: Contract rules: conid (as text) -> the ``sizeIncrement`` ``/iserver/contract/rules`` answers
    #: (default 1: whole shares), e.g. {"12340038": 0.0001} for a fractional-share contract.
    size_increments: dict[str, float] = field(default_factory=dict)
    #: ``/iserver/account/trades`` lists an order's executions only this many seconds after the
    #: order was created (IBKR lists fills with a delay; its length is UNCONFIRMED).
    trades_delay_seconds: float = 0.0
    #: Websocket: seconds between the ``system`` heartbeats (IBKR's interval is UNCONFIRMED).
    ws_heartbeat_seconds: float = 10.0
    #: Websocket: refuse every login (close 1008 "not authenticated"), as IBKR does a session it
    #: does not accept on its socket.
    ws_refuse: bool = False
    #: Websocket: how often a socket's loop looks for changes to push (orders, fills, prices).
    ws_push_interval: float = 0.1
    #: Price model (``sandbox/prices.py``): seconds per market tick; 0 stops the clock, and prices
    #: then move only by ``POST /__sandbox__/market`` steps or set prices.
    price_tick_seconds: float = 5.0
    #: How far a price wanders from its seeded (or last set) value: 0.02 is +/- 2 %; 0 freezes it.
    price_volatility: float = 0.02
    #: Seed of the price paths: the same seed gives the same prices at the same tick.
    price_seed: int = 0

    @property
    def global_limit(self) -> float:
        if self.rate_limit is not None:
            return self.rate_limit
        return GATEWAY_GLOBAL_PER_SECOND if self.gateway else OAUTH_GLOBAL_PER_SECOND

    def update(self, values: dict[str, Any]) -> None:
        """Apply a partial update, rejecting unknown keys and the mode flag."""
        known = {f.name for f in dataclasses.fields(self)} - {"gateway", "oauth1a"}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}; known: {sorted(known)}")
        for key, value in values.items():
            setattr(self, key, value)
