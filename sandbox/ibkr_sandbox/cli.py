"""``ibkr-sandbox``: run the local IBKR Web API.

``ibkr-sandbox serve --host 127.0.0.1 --port 0 --state-dir DIR`` binds (port 0 picks a free
port), writes the demo client's keys and a ready ``AIRFLOW_CONN_*`` JSON into DIR, then
``DIR/sandbox.json`` with the actual base URL once it accepts connections.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Sequence
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ibkr-sandbox", description="A local IBKR Web API for tests and demos."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the sandbox server")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=5001, help="port to bind; 0 picks a free port")
    serve.add_argument(
        "--state-dir", type=Path, required=True, help="directory for keys, TLS and the connection"
    )
    serve.add_argument("--public-url", help="base URL written into the connection (default: from host/port)")
    serve.add_argument(
        "--gateway", action="store_true", help="serve Client Portal Gateway mode (TLS, no auth)"
    )
    serve.add_argument(
        "--auth",
        choices=("oauth2", "oauth1a"),
        default="oauth2",
        help="how API clients authenticate: OAuth 2.0 (default) or self-service OAuth 1.0a",
    )
    serve.add_argument("--access-token-lifetime", type=float, default=3600.0, help="seconds (default 3600)")
    serve.add_argument(
        "--max-assertion-lifetime",
        type=float,
        default=600.0,
        help="longest accepted client-assertion lifetime in seconds (default 600)",
    )
    serve.add_argument(
        "--clock-skew", type=float, default=30.0, help="accepted clock skew in seconds (default 30)"
    )
    serve.add_argument(
        "--sso-idle-timeout",
        type=float,
        default=600.0,
        help="seconds of inactivity before a session expires (default 600)",
    )
    serve.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        help="global requests/s per username (default IBKR's: 50 OAuth, 10 gateway)",
    )
    serve.add_argument(
        "--no-endpoint-limits", action="store_true", help="do not enforce IBKR's per-endpoint table"
    )
    serve.add_argument(
        "--penalty-seconds",
        type=float,
        default=15.0,
        help="penalty box after a pacing violation (IBKR: 10-15 min; default 15 s)",
    )
    serve.add_argument(
        "--flex-token", help="the Flex Web Service token to accept (default: generated once in --state-dir)"
    )
    serve.add_argument(
        "--price-tick-seconds",
        type=float,
        default=5.0,
        help="seconds per market tick of the price model; 0 moves prices only on request (default 5)",
    )
    serve.add_argument(
        "--price-volatility",
        type=float,
        default=0.02,
        help="how far prices wander from their seeded values, as a fraction; 0 freezes them (default 0.02)",
    )
    serve.add_argument(
        "--price-seed", type=int, default=0, help="seed of the deterministic price paths (default 0)"
    )
    serve.add_argument(
        "--advisor-subaccounts",
        type=int,
        default=0,
        help="add an advisor login, sandboxadvisor, with this many sub-accounts (default 0)",
    )
    serve.add_argument(
        "--persist",
        action="store_true",
        help="keep IBKR-side state (book, orders, prices, counters) across restarts, in --state-dir",
    )
    serve.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    return parser


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from ibkr_sandbox.app import create_app
    from ibkr_sandbox.authcode import AuthorizationServer
    from ibkr_sandbox.connections import write_ready_files
    from ibkr_sandbox.consent import ConsentBroker, ThirdPartyConsumer
    from ibkr_sandbox.files import (
        AUTHORIZE_PASSWORD,
        ensure_client_keys,
        ensure_flex_token,
        ensure_gateway_tls,
        ensure_oauth1_consumer,
        third_party_consumer,
    )
    from ibkr_sandbox.oauth1 import Consumer, OAuth1Verifier
    from ibkr_sandbox.seed import SECOND_CREDENTIAL
    from ibkr_sandbox.settings import SandboxSettings
    from ibkr_sandbox.state import SandboxState

    state_dir: Path = args.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    client_keys = ensure_client_keys(state_dir)
    settings = SandboxSettings(
        access_token_lifetime=args.access_token_lifetime,
        max_assertion_lifetime=args.max_assertion_lifetime,
        clock_skew=args.clock_skew,
        sso_idle_timeout=args.sso_idle_timeout,
        gateway=args.gateway,
        oauth1a=args.auth == "oauth1a" and not args.gateway,
        rate_limit=args.rate_limit,
        endpoint_limits=not args.no_endpoint_limits,
        penalty_seconds=args.penalty_seconds,
        price_tick_seconds=args.price_tick_seconds,
        price_volatility=args.price_volatility,
        price_seed=args.price_seed,
        advisor_subaccounts=args.advisor_subaccounts,
    )
    state = SandboxState(settings=settings, client_keys=client_keys)
    mode = "gateway" if args.gateway else args.auth
    if not settings.gateway:  # OAuth 1.0a is served in both auth modes (the mode picks the preset)
        record = ensure_oauth1_consumer(state_dir)
        consumer = Consumer(
            consumer_key=record["consumer_key"],
            access_token=record["access_token"],
            prepend=bytes.fromhex(record["prepend"]),
            signature_public_pem=record["signature_public_pem"],
            dh_prime=int(record["dh_prime"], 16),
            credential=record["credential"],
        )
        state.oauth1 = OAuth1Verifier({consumer.consumer_key: consumer}, settings)
        third = third_party_consumer(state_dir)
        state.consent = ConsentBroker(
            state.oauth1,
            {
                third["consumer_key"]: ThirdPartyConsumer(
                    consumer_key=third["consumer_key"],
                    signature_public_pem=third["signature_public_pem"],
                    encryption_public_pem=third["encryption_public_pem"],
                    dh_prime=int(third["dh_prime"], 16),
                )
            },
            users={record["credential"]: AUTHORIZE_PASSWORD, SECOND_CREDENTIAL: AUTHORIZE_PASSWORD},
        )
        state.authcode = AuthorizationServer(client_keys, users=state.consent.users)
    certfile: str | None = None
    keyfile: str | None = None
    if args.gateway:
        _, cert, key = ensure_gateway_tls(state_dir)
        certfile, keyfile = str(cert), str(key)

    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    scheme = "https" if args.gateway else "http"
    wildcard_or_loopback = ("127.0.0.1", "0.0.0.0")  # noqa: S104 - a comparison, not a bind
    shown_host = "localhost" if args.gateway and args.host in wildcard_or_loopback else args.host
    base_url = args.public_url or f"{scheme}://{shown_host}:{port}"

    config = uvicorn.Config(
        create_app(state, flex_token=ensure_flex_token(state_dir, args.flex_token)),
        log_level=args.log_level,
        access_log=False,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        # open websockets (a triggerer's fill watcher) must not hold a stop past RunningSandbox's
        # 10 s grace: --persist saves the state after the server returns
        timeout_graceful_shutdown=3,
    )

    class _Announcing(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            write_ready_files(state_dir, base_url=base_url, port=port, mode=mode)
            logging.getLogger("ibkr_sandbox").warning("IBKR sandbox listening on %s", base_url)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await super().shutdown(sockets=sockets)
            # here, not after run(): uvicorn raises the stopping signal again once run() ends
            if args.persist:
                persist.save(state, state_dir)

    from ibkr_sandbox import persist

    if args.persist:
        persist.restore(state, state_dir)
    _Announcing(config).run(sockets=[sock])


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "serve":
        serve(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
