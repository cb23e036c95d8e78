"""In-memory state of the sandbox: registered client keys, tokens, sessions, the book.

FastAPI runs sync endpoints in a thread pool. Tokens, sessions, the book, orders and the market
change only under ``SandboxState.lock``; the counters, the fault queue and the pacing ledger
(``ledger.py``, ``pacing.py``) each own a lock, so counting or pacing a request never waits for
the book. The knobs are ``settings.py``'s, the token and session records ``sessions.py``'s, and
``market.py`` moves the market under this lock.
"""

from __future__ import annotations

import copy
import dataclasses
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ibkr_sandbox.authcode import AuthorizationServer
from ibkr_sandbox.consent import ConsentBroker
from ibkr_sandbox.ledger import Counters, FaultQueue
from ibkr_sandbox.loopwatch import Arrival
from ibkr_sandbox.oauth1 import OAuth1Verifier
from ibkr_sandbox.orders import OrderBook
from ibkr_sandbox.pacing import PacingLedger
from ibkr_sandbox.prices import Anchor, Market, MarketClock
from ibkr_sandbox.seed import (
    ADVISOR_CREDENTIAL,
    SANDBOX_CREDENTIAL,
    SECOND_CREDENTIAL,
    SECOND_CREDENTIAL_ACCOUNTS,
    SeedBook,
    advisor_accounts,
    build_seed_book,
)
from ibkr_sandbox.sessions import AccessTokenRecord, SsoSessionRecord
from ibkr_sandbox.settings import SandboxSettings
from ibkr_sandbox.stream import StreamRegistry


@dataclass
class SandboxState:
    settings: SandboxSettings
    #: client id -> {kid -> public key PEM}
    client_keys: dict[str, dict[str, str]]
    credentials: dict[str, list[str]] = field(default_factory=dict)
    book: SeedBook = field(default_factory=build_seed_book)
    access_tokens: dict[str, AccessTokenRecord] = field(default_factory=dict)
    sessions: dict[str, SsoSessionRecord] = field(default_factory=dict)
    #: credential -> session id holding the brokerage session (IBKR allows one per username)
    brokerage_holder: dict[str, str] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    faults: FaultQueue = field(init=False)
    orders: OrderBook = field(default_factory=OrderBook)
    #: Flex Web Service: reference code -> the statement it asked for (``flex.FlexRequest``).
    flex_requests: dict[str, Any] = field(default_factory=dict)
    #: Scheduled price moves: (epoch seconds, conid, price), applied when due.
    price_moves: list[tuple[float, int, float]] = field(default_factory=list)
    pacing: PacingLedger = field(default_factory=PacingLedger)
    #: The open websockets (``/v1/api/ws``) and the faults asked of them.
    streams: StreamRegistry = field(default_factory=StreamRegistry)
    lock: threading.RLock = field(default_factory=threading.RLock)
    #: OAuth 1.0a mode: the consumers and their live session tokens.
    oauth1: OAuth1Verifier | None = None
    #: OAuth 1.0a mode: the three-legged consents of the third-party consumer.
    consent: ConsentBroker | None = None
    #: OAuth 2.0 authorization code: consents, codes and token families (not in gateway mode).
    authcode: AuthorizationServer | None = None
    started_at: float = field(default_factory=time.time)
    #: IBKR's user id of the sandbox user (tickle's ``userId``): one per sandbox process.
    user_id: int = field(default_factory=lambda: 10_000_000 + secrets.randbelow(89_999_999))
    market: Market = field(init=False)

    def user_id_of(self, credential: str) -> int:
        """IBKR's user id of a login (each login its own; the first one's is :attr:`user_id`)."""
        return self.user_id + list(self.credentials).index(credential)

    def __post_init__(self) -> None:
        self.faults = FaultQueue(self.counters)
        self.market = self._opening_market()
        self._pristine_settings = dataclasses.replace(self.settings)
        if not self.credentials:
            self.credentials = {
                SANDBOX_CREDENTIAL: list(self.book.accounts),
                SECOND_CREDENTIAL: list(SECOND_CREDENTIAL_ACCOUNTS),
            }
        if self.settings.advisor_subaccounts:
            subaccounts = advisor_accounts(self.book, self.settings.advisor_subaccounts)
            self.book.accounts.update((a.account_id, a) for a in subaccounts)
            self.credentials[ADVISOR_CREDENTIAL] = [a.account_id for a in subaccounts]
        self._pristine_book = copy.deepcopy(self.book)
        if self.settings.gateway:
            self._open_gateway_session()

    def _open_gateway_session(self) -> None:
        now = time.time()
        record = SsoSessionRecord(
            session_id="gateway",
            client_id="gateway",
            credential=SANDBOX_CREDENTIAL,
            ip="127.0.0.1",
            created_at=now,
            last_active=now,
        )
        self.sessions[record.session_id] = record

    def reset(self) -> None:
        """Restore the seeded book, drop every token and session, zero the counters."""
        with self.lock:
            self.book = copy.deepcopy(self._pristine_book)
            for f in dataclasses.fields(self.settings):
                setattr(self.settings, f.name, getattr(self._pristine_settings, f.name))
            self.faults.clear()
            self.orders = OrderBook()
            self.flex_requests.clear()
            self.price_moves.clear()
            self.market = self._opening_market()
            self.pacing.clear()
            self.access_tokens.clear()
            self.sessions.clear()
            self.brokerage_holder.clear()
            self.counters.clear()
            if self.oauth1 is not None:
                self.oauth1.reset()
            if self.consent is not None:
                self.consent.pending.clear()
                self.consent.nonces.clear()
            if self.authcode is not None:
                self.authcode.reset()
            if self.settings.gateway:
                self._open_gateway_session()

    # -------------------------------------------------------------- tokens and sessions
    def issue_access_token(
        self, client_id: str, username: str | None = None, family: str | None = None
    ) -> tuple[str, float]:
        with self.lock:
            token = secrets.token_urlsafe(32)
            lifetime = self.settings.access_token_lifetime
            if username is not None and self.settings.user_token_lifetime is not None:
                lifetime = self.settings.user_token_lifetime
            self.access_tokens[token] = AccessTokenRecord(client_id, time.time() + lifetime, username, family)
            self.counters.add("tokens_issued")
            return token, lifetime

    def access_token(self, token: str) -> AccessTokenRecord | None:
        with self.lock:
            record = self.access_tokens.get(token)
            if record is None or record.expires_at <= time.time():
                return None
            if self.family_revoked(record.family):
                return None
            return record

    def open_sso_session(self, token: AccessTokenRecord, credential: str, ip: str) -> SsoSessionRecord:
        with self.lock:
            now = time.time()
            record = SsoSessionRecord(
                secrets.token_urlsafe(32),
                token.client_id,
                credential,
                ip,
                now,
                now,
                expires_at=token.expires_at,
                family=token.family,
            )
            self.sessions[record.session_id] = record
            self.counters.add("sso_sessions")
            return record

    def open_oauth1_session(self, credential: str, lst: str, expires_at: float, replaces: list[str]) -> None:
        """A live session token opens a session (keyed by the token); it ends the sessions of
        the tokens it replaces (IBKR honours only the newest)."""
        with self.lock:
            for old in replaces:
                self.end_session(old)
            now = time.time()
            self.sessions[lst] = SsoSessionRecord(
                lst, "oauth1a", credential, "", now, now, expires_at=expires_at
            )
            self.counters.add("lst_issued")

    def live_session(self, session_id: str | None) -> SsoSessionRecord | None:
        """The session for a bearer (or the gateway's implicit one), if not idle-expired; touches it."""
        with self.lock:
            if self.settings.gateway:
                session_id = "gateway"
            record = self.sessions.get(session_id or "") or self._user_token_session(session_id or "")
            if record is None:
                return None
            now = time.time()
            idle = now - record.last_active > self.settings.sso_idle_timeout
            if idle or now >= record.expires_at or self.family_revoked(record.family):
                self.end_session(record.session_id)
                return None
            record.last_active = now
            return record

    def _user_token_session(self, token: str) -> SsoSessionRecord | None:
        """A user's own access token (authorization code) sent as the bearer itself: the
        sandbox takes it as that user's session (whether IBKR does is UNCONFIRMED: the provider's
        ``user_session`` setting chooses), opened on first use and ending with the token."""
        record = self.access_token(token)
        if record is None or record.username is None:
            return None
        now = time.time()
        session = SsoSessionRecord(
            token,
            record.client_id,
            record.username,
            "",
            now,
            now,
            expires_at=record.expires_at,
            family=record.family,
        )
        self.sessions[token] = session
        self.counters.add("user_token_sessions")
        return session

    def family_revoked(self, family_id: str | None) -> bool:
        """Whether a user grant was revoked (a reused refresh token, RFC 7009, a replayed code):
        the tokens and sessions it gave end with it."""
        if family_id is None or self.authcode is None:
            return False
        family = self.authcode.families.get(family_id)
        return family is None or family.revoked

    def end_session(self, session_id: str) -> None:
        with self.lock:
            record = self.sessions.pop(session_id, None)
            if record and self.brokerage_holder.get(record.credential) == session_id:
                del self.brokerage_holder[record.credential]
            if self.settings.gateway and session_id == "gateway":
                self._open_gateway_session()

    def init_brokerage(self, record: SsoSessionRecord, compete: bool) -> None:
        """``ssodh/init``: one brokerage session per username; ``compete`` takes it over."""
        with self.lock:
            self.counters.add("ssodh_inits")
            holder = self.brokerage_holder.get(record.credential)
            if holder and holder != record.session_id and holder in self.sessions:
                if not compete:
                    record.competing = True
                    record.brokerage = False
                    return
                dropped = self.sessions[holder]
                self.counters.add("competing_takeovers")
                dropped.brokerage = False
                dropped.competing = True
                dropped.iserver_accounts_queried = False
            self.brokerage_holder[record.credential] = record.session_id
            record.brokerage = True
            record.competing = False

    def stats(self) -> dict[str, Any]:
        out = self.counters.snapshot()
        with self.lock:
            out["active_sessions"] = len(self.sessions)
        out["ws_open"] = self.streams.snapshot()["open"]
        if self.pacing.last_violation is not None:
            out["last_pacing_violation"] = self.pacing.last_violation
        return out

    # -------------------------------------------------------------- the market
    def _opening_market(self) -> Market:
        anchors = {conid: Anchor(i.last_price, 0) for conid, i in self.book.instruments.items()}
        return Market(MarketClock(time.time()), anchors)

    # -------------------------------------------------------------- pacing
    def admit(self, username: str, method: str, api_path: str, arrival: Arrival) -> float | None:
        """Count a ``/v1/api`` request (read at ``arrival.read``, epoch seconds; possibly as early
        as ``arrival.earliest`` after a stall of the sandbox) against IBKR's limits: None when
        admitted, else the seconds until the username's penalty box opens again (see
        :class:`PacingLedger`)."""
        settings = self.settings
        wait, broken = self.pacing.admit(
            username,
            method,
            api_path,
            arrival.read,
            earliest=arrival.earliest,
            global_limit=settings.global_limit,
            endpoint_limits=settings.endpoint_limits,
            penalty_seconds=settings.penalty_seconds,
        )
        if broken is not None:
            self.counters.add("penalties")
            self.counters.add(f"violations_{broken}")
        return wait
