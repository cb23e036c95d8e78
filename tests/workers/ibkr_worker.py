"""A separate OS process that uses the provider like a task would (for multi-process tests).

Usage: python -m tests.workers.ibkr_worker START_AT ACTION [N [INDEX]]
  START_AT  epoch seconds to wait for, so all workers hit the sandbox at the same moment
  ACTION    "accounts" (list accounts via IbkrHook), "requests" (N x GET /iserver/accounts),
            "place" (one resting order through the client's safe placement) or
            "place_unlocked" (the same order the naive way: POST it, confirm its question)
  INDEX     this worker's number: it picks the account (even: DU2345678, odd: DU1234567)
Prints one line "IBKR-WORKER-RESULT <json>" with pid, started, finished, requests and, when
present, accounts or error; exits 1 when the action failed with an IbkrError.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    start_at, action = float(sys.argv[1]), sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    index = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    from ibkr_provider.client import IbkrError
    from ibkr_provider.client.orders import OrderTicket
    from ibkr_provider.hooks.ibkr import IbkrHook

    hook = IbkrHook()
    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    result: dict[str, object] = {"pid": os.getpid(), "started": started}
    client = hook.get_conn()
    done = 0
    try:
        if action == "accounts":
            result["accounts"] = [a.account_id for a in client.list_accounts()]
        elif action == "requests":
            for _ in range(count):
                client.request("GET", "/iserver/accounts")
                done += 1
        elif action in ("place", "place_unlocked"):
            # One resting paper order per worker, far below the market.
            account = ("DU2345678", "DU1234567")[index % 2]
            ticket = OrderTicket(
                conid=12340038,
                side="BUY",
                quantity=1,
                order_type="LMT",
                limit_price=1.0,
                coid=f"race-{index}",
            )
            if action == "place":
                placed = client.orders.place(account, ticket, allowed_message_ids=["o163"])
                result["order_id"] = placed.order_id
            else:
                client.brokerage_accounts()
                body = {"orders": [ticket.to_json(account)]}
                question = client.request("POST", f"/iserver/account/{account}/orders", json=body)
                client.request("POST", f"/iserver/reply/{question[0]['id']}", json={"confirmed": True})
            done += 1
        else:
            raise SystemExit(f"unknown action {action}")
    except IbkrError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["requests"] = done
    result["finished"] = time.time()
    client.close()
    sys.stdout.write("IBKR-WORKER-RESULT " + json.dumps(result) + "\n")
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
