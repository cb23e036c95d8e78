"""Answers IBKR should never give but sometimes does: the ``malformed`` fault turns the true
answer of a request into one of these shapes (issue 26), so the client's handling of each is
tested over HTTP.

- ``truncated``: the first half of the true JSON (a connection cut mid-body behind a proxy);
- ``wrong_types``: the true JSON with every value's type swapped (text for numbers, numbers for
  text, an object for a list, a list for an object), two levels deep;
- ``missing_fields``: the true JSON with every object emptied (an empty list gets one empty row);
- ``html``: a 200 with an HTML error page (what a gateway or load balancer answers in a fault);
- ``error_200``: a 200 carrying IBKR's error object;
- ``huge``: a valid JSON object of 8 MB that holds nothing the endpoint promises.
"""

from __future__ import annotations

import json
from typing import Any

SHAPES = ("truncated", "wrong_types", "missing_fields", "html", "error_200", "huge")
HTML_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1>"
    b"<p>The proxy server received an invalid response from an upstream server.</p></body></html>"
)


def _swapped(value: Any, depth: int) -> Any:
    if isinstance(value, dict):
        return [1] if depth == 0 else {k: _swapped(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        return {"0": 1} if depth == 0 else [_swapped(v, depth - 1) for v in value]
    if isinstance(value, bool) or value is None:
        return "yes"
    if isinstance(value, (int, float)):
        return "twelve"
    return 12345


def _emptied(value: Any) -> Any:
    if isinstance(value, dict):
        return {}
    if isinstance(value, list):
        return [_emptied(v) for v in value]
    return value


def malformed(shape: str, true_body: bytes) -> tuple[bytes, bytes]:
    """The body and content type that replace ``true_body`` for ``shape``."""
    if shape == "truncated":
        return (true_body[: len(true_body) // 2] or b'{"'), b"application/json"
    if shape == "html":
        return HTML_PAGE, b"text/html"
    if shape == "error_200":
        return json.dumps({"error": "Internal server error", "statusCode": 500}).encode(), b"application/json"
    if shape == "huge":
        return b'{"padding": "' + b"x" * (8 * 1024 * 1024) + b'"}', b"application/json"
    try:
        truth = json.loads(true_body or b"null")
    except ValueError:
        truth = None
    if shape == "wrong_types":
        # an empty list or object has no values to swap: its own type is swapped
        changed = _swapped(truth, 0 if truth in ([], {}) else 2)
    else:  # an empty list gets a row with no fields
        changed = [{}] if truth == [] else _emptied(truth)
    return json.dumps(changed).encode(), b"application/json"
