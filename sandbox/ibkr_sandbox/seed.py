"""Deterministic seeded accounts, instruments and positions for the sandbox.

The same seed always yields the same book, so tests can assert exact counts and values.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

SANDBOX_CLIENT_ID = "sandbox-client"
SANDBOX_KEY_ID = "sandbox-key-1"
SANDBOX_CREDENTIAL = "sandboxuser"
#: A second IBKR login (it sees only DU2345678): a second person connecting through Connect IBKR.
SECOND_CREDENTIAL = "sandboxuser2"
SECOND_CREDENTIAL_ACCOUNTS = ("DU2345678",)
#: A financial advisor's login (``--advisor-subaccounts N``): N small sub-accounts of its own.
ADVISOR_CREDENTIAL = "sandboxadvisor"
#: The sandbox user's IBKR user id is drawn per sandbox process (``SandboxState.user_id``): each
#: sandbox is an IBKR of its own, and clients that tell users apart by id must not take two
#: sandboxes' users for one.

_REAL_TICKERS = [
    ("AAPL", "APPLE INC", "NASDAQ", 265598, 228.0),
    ("MSFT", "MICROSOFT CORP", "NASDAQ", 272093, 431.0),
    ("SPY", "SPDR S&P 500 ETF TRUST", "ARCA", 756733, 585.0),
    ("VTI", "VANGUARD TOTAL STOCK MKT ETF", "ARCA", 12340038, 289.0),
    ("BND", "VANGUARD TOTAL BOND MARKET", "NASDAQ", 43645865, 72.5),
    ("VXUS", "VANGUARD TOTAL INTL STOCK", "NASDAQ", 53187549, 61.8),
    ("GLD", "SPDR GOLD SHARES", "ARCA", 51529211, 243.0),
    ("NVDA", "NVIDIA CORP", "NASDAQ", 4815747, 138.0),
    ("AMZN", "AMAZON.COM INC", "NASDAQ", 3691937, 197.0),
    ("GOOGL", "ALPHABET INC-CL A", "NASDAQ", 208813719, 168.0),
    ("IEF", "ISHARES 7-10 YEAR TREASURY BD", "NASDAQ", 10190860, 94.0),
    ("TLT", "ISHARES 20+ YEAR TREASURY BD", "NASDAQ", 15547841, 91.0),
]


@dataclass(frozen=True)
class Instrument:
    """A tradable contract the sandbox knows."""

    conid: int
    symbol: str
    name: str
    exchange: str
    #: The current price: seeded, then moved by the price model (``sandbox/prices.py``).
    last_price: float
    currency: str = "USD"
    asset_class: str = "STK"
    #: Yesterday's close, the base of the daily PnL (``pnl/partitioned``, the ``spl`` topic):
    #: 1% under the seeded price, and it stays put while the price moves.
    prior_close: float = 0.0

    def __post_init__(self) -> None:
        if not self.prior_close:
            object.__setattr__(self, "prior_close", round(self.last_price / 1.01, 2))


@dataclass
class SeedPosition:
    conid: int
    quantity: float
    avg_cost: float


@dataclass
class SeedAccount:
    account_id: str
    title: str
    paper: bool
    cash: float
    positions: list[SeedPosition] = field(default_factory=list)


@dataclass
class SeedBook:
    instruments: dict[int, Instrument]
    accounts: dict[str, SeedAccount]


def _synthetic_instruments(rng: random.Random, count: int) -> list[Instrument]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    seen = {t[0] for t in _REAL_TICKERS}
    made: list[Instrument] = []
    conid = 90_000_000
    while len(made) < count:
        symbol = "".join(rng.choice(letters) for _ in range(rng.choice((3, 4))))
        if symbol in seen:
            continue
        seen.add(symbol)
        conid += rng.randint(1, 997)
        made.append(
            Instrument(
                conid=conid,
                symbol=symbol,
                name=f"{symbol} HOLDINGS INC",
                exchange=rng.choice(("NYSE", "NASDAQ", "ARCA")),
                last_price=round(rng.uniform(5, 400), 2),
            )
        )
    return made


def build_seed_book(seed: int = 7) -> SeedBook:
    """Three accounts of one login: a large paper account (273 positions, three pages), a small
    paper account, and a small account flagged live (id without the ``D`` paper prefix)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible seed data, not cryptography
    real = [
        Instrument(conid=c, symbol=s, name=n, exchange=e, last_price=p) for s, n, e, c, p in _REAL_TICKERS
    ]
    synthetic = _synthetic_instruments(rng, 280)
    instruments = {i.conid: i for i in [*real, *synthetic]}

    def holding(inst: Instrument) -> SeedPosition:
        qty = float(rng.randint(1, 400))
        return SeedPosition(inst.conid, qty, round(inst.last_price * rng.uniform(0.7, 1.1), 4))

    large = SeedAccount("DU1234567", "Sandbox Paper Growth", True, 125_000.0)
    large.positions = [holding(i) for i in [*real, *synthetic[:261]]]  # 273 positions
    small = SeedAccount("DU2345678", "Sandbox Paper Income", True, 40_000.0)
    small.positions = [holding(i) for i in real[:6]]
    live = SeedAccount("U3456789", "Sandbox Live (flagged)", False, 15_000.0)
    live.positions = [holding(i) for i in real[2:5]]
    return SeedBook(instruments=instruments, accounts={a.account_id: a for a in (large, small, live)})


def advisor_accounts(book: SeedBook, count: int) -> list[SeedAccount]:
    """``count`` paper sub-accounts of an advisor, ``DU9000001`` on, each with cash and three of
    the real tickers (deterministic: the same count gives the same accounts)."""
    real = [i for i in book.instruments.values() if i.conid < 90_000_000]
    made = []
    for n in range(1, count + 1):
        account = SeedAccount(f"DU9{n:06d}", f"Advisor client {n}", True, 10_000.0 + n)
        picks = [real[(n + k) % len(real)] for k in range(3)]
        account.positions = [
            SeedPosition(i.conid, float(1 + (n * 7 + k) % 50), i.last_price) for k, i in enumerate(picks)
        ]
        made.append(account)
    return made
