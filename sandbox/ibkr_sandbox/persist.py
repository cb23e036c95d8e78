"""IBKR-side state that outlives a sandbox restart, as IBKR's outlives its own restarts.

When IBKR restarts its side (the nightly reset, a maintenance window) every session and token
ends, but the accounts, their positions and cash, the orders with their client order ids and
fills are still there afterwards. ``ibkr-sandbox serve --persist`` keeps the same: the book,
the order book, the Flex statements asked for, the market's prices and the request counters are written to
``STATE_FILE`` in the state directory when the sandbox stops (SIGTERM, Ctrl-C) and read back
when it starts. Tokens, SSO and brokerage sessions, pending confirmation questions, the pacing
ledger and injected faults are not kept: a client meets a restarted IBKR with its session gone.

A killed sandbox (SIGKILL) keeps what it had at its last clean stop: IBKR's restarts are
scheduled, not crashes. The file is the sandbox's own (mode 0600, in its state directory).
"""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Any

from ibkr_sandbox.prices import MarketClock
from ibkr_sandbox.state import SandboxState

STATE_FILE = "ibkr-side-state.pickle"


def save(state: SandboxState, state_dir: Path) -> Path:
    """Write the IBKR-side state to ``state_dir/STATE_FILE`` (whole: temporary name, rename)."""
    with state.lock:
        kept: dict[str, Any] = {
            "book": state.book,
            "orders": state.orders.orders,
            "anchors": state.market.anchors,
            "tick": state.market.current_tick,
            "price_moves": list(state.price_moves),
            "flex_requests": dict(state.flex_requests),
            "counters": state.counters.dump(),
        }
        data = pickle.dumps(kept)
    target = state_dir / STATE_FILE
    partial = state_dir / f".{STATE_FILE}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as stream:
        stream.write(data)
    partial.replace(target)
    return target


def restore(state: SandboxState, state_dir: Path) -> bool:
    """Read back what :func:`save` wrote, if anything; returns whether there was a state."""
    source = state_dir / STATE_FILE
    if not source.exists():
        return False
    # The sandbox's own file from its own state directory (written by save above).
    kept = pickle.loads(source.read_bytes())  # noqa: S301
    with state.lock:
        state.book = kept["book"]
        state.orders.orders = kept["orders"]
        state.orders.next_ids(max(state.orders.orders, default=1_000_000) + 1)
        state.market.anchors = kept["anchors"]
        state.market.current_tick = kept["tick"]
        state.market.clock = MarketClock(time.time(), elapsed_ticks=float(kept["tick"]))
        state.price_moves[:] = kept["price_moves"]
        state.flex_requests.update(kept["flex_requests"])
        state.counters.load(kept["counters"])
        state.counters.add("restarts")
    return True
