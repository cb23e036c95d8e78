"""A separate OS process that uses the provider like a task would (for multi-process tests).

Usage: python -m tests.support.workers.ibkr_worker ACTION [N [INDEX]]
  ACTION    "accounts" (list accounts via IbkrHook), "requests" (N x GET /iserver/accounts),
            "place" (one order through the client's safe placement, without a cOID, so nothing
            but the placement lock orders the placements), "place_unlocked" (the same with the
            lock replaced by a no-op: the control case) or "place_naive" (POST the order, then
            confirm its question, as a script without the client's order service would)
  INDEX     this worker's number: it picks the account (even: DU2345678, odd: DU1234567)
Prints "IBKR-WORKER-READY" once imported, waits for a line on stdin (the start barrier), then
prints one line "IBKR-WORKER-RESULT <json>" with pid, started, asked_at (when it first asked for
the session), finished, requests, the session stats and, when present, accounts or error; exits
1 when the action failed with an IbkrError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from typing import Any


def main() -> int:
    # The protocol (READY, RESULT) keeps stdout; everything else that writes to stdout (Airflow's
    # logging) goes to stderr, which the parent collects in a file.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    action = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    index = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    from ibkr_provider.client import IbkrError
    from ibkr_provider.client.orders import OrderTicket
    from ibkr_provider.hooks.ibkr import IbkrHook

    hook = IbkrHook()
    client = hook.get_conn()  # reads the connection; no request yet
    protocol.write("IBKR-WORKER-READY\n")
    protocol.flush()
    sys.stdin.readline()
    started = time.time()
    result: dict[str, Any] = {"pid": os.getpid(), "started": started}
    done = 0
    try:
        result["asked_at"] = time.time()
        if action == "accounts":
            result["accounts"] = [a.account_id for a in client.list_accounts()]
        elif action == "requests":
            for _ in range(count):
                client.request("GET", "/iserver/accounts")
                done += 1
        elif action in ("place", "place_unlocked", "place_naive"):
            # One resting paper order per worker, far below the market.
            account = ("DU2345678", "DU1234567")[index % 2]
            ticket = OrderTicket(conid=12340038, side="BUY", quantity=1, order_type="LMT", limit_price=1.0)
            if action == "place_naive":
                client.brokerage_accounts()
                body = {"orders": [ticket.to_json(account)]}
                question = client.request("POST", f"/iserver/account/{account}/orders", json=body)
                client.request("POST", f"/iserver/reply/{question[0]['id']}", json={"confirmed": True})
            else:
                if action == "place_unlocked":
                    client.sessions.lock = lambda name, timeout: contextlib.nullcontext(_NoLease())  # type: ignore[method-assign]
                result["order_id"] = client.orders.place(
                    account, ticket, allowed_message_ids=["o163"]
                ).order_id
            done += 1
        else:
            raise SystemExit(f"unknown action {action}")
    except IbkrError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["requests"] = done
    result["finished"] = time.time()
    result["session"] = dataclasses.asdict(client.sessions.stats)
    hook.close()
    protocol.write("IBKR-WORKER-RESULT " + json.dumps(result) + "\n")
    protocol.flush()
    return 1 if "error" in result else 0


class _NoLease:
    """The control case's stand-in for a held lock: nothing is held, nothing is checked."""

    def check(self) -> None:
        return None


if __name__ == "__main__":
    sys.exit(main())
