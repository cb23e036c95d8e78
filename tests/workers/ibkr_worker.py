"""A separate OS process that uses the provider like a task would (for multi-process tests).

Usage: python -m tests.workers.ibkr_worker START_AT ACTION [N]
  START_AT  epoch seconds to wait for, so all workers hit the sandbox at the same moment
  ACTION    "accounts" (list accounts via IbkrHook) or "requests" (N x GET /iserver/accounts)
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
    from ibkr_provider.client import IbkrError
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
