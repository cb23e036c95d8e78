"""A reverse proxy that resolves dot segments before forwarding, as many front ends do.

nginx, for one, decodes a request path and merges ``.`` and ``..`` segments before it picks a
location and passes the request on. Put in front of the sandbox, this proxy makes a path such as
``/iserver/account/DU1234567/../U3456789/orders`` reach ``U3456789``: the attack the provider's
account-id checks must stop before a request is built. It binds 127.0.0.1 on a free port and
forwards every request (method, query, headers, body) to the upstream; the test that starts it
stops it.
"""

from __future__ import annotations

import posixpath
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import unquote, urlsplit

import requests

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def resolve(path: str) -> str:
    """The path as a resolving front end routes it: percent-decoded, dot segments merged."""
    decoded = unquote(path)
    resolved = posixpath.normpath(decoded)
    return resolved + "/" if decoded.endswith("/") and resolved != "/" else resolved


class ResolvingProxy:
    """``with ResolvingProxy(upstream) as proxy:`` then send requests to ``proxy.url``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        #: Every path as received and as forwarded, in order.
        self.seen: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                parts = urlsplit(self.path)
                forwarded = resolve(parts.path)
                proxy.seen.append((parts.path, forwarded))
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                url = proxy.upstream + forwarded + (f"?{parts.query}" if parts.query else "")
                answer = requests.request(self.command, url, data=body, headers=headers, timeout=30)
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-encoding":
                        self.send_header(key, value)
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_DELETE = do_PUT = _forward

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # serve_forever looks for shutdown() every poll_interval (0.5 s by default): each of the
        # live-guard tests waited that out, 17 s over the fast tier
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="resolving-proxy",
            daemon=True,
        )

    def __enter__(self) -> ResolvingProxy:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
