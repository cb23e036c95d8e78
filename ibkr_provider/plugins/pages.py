"""The plumbing of the Connect IBKR pages: who is asking (an Airflow login allowed to edit
connections), the forms' CSRF token, the page frame and its headers, and the masker both the task
side and the API server use.

Security: every page needs an Airflow login (the UI's ``_token`` cookie, read by Airflow's own
``get_user``) and Airflow's auth manager must allow the user to edit connections; forms carry a
CSRF token (HMAC of the user id with ``[api] secret_key``). Every page is never cached, never
sends a referrer (IBKR's redirect carries tokens) and is framed by Airflow's own UI only; what
leads to IBKR's login leaves the frame (``target="_top"``): IBKR's page is never framed.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import urllib.parse
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import HTMLResponse

from ibkr_provider.plugins.consent import same_secret
from ibkr_provider.plugins.routes import CONNECT_ROUTE

#: Every page: never cached, never sends a referrer (IBKR's redirect carries tokens), framed by
#: Airflow's own UI (same origin: the Admin menu shows it in Airflow's frame) and by no other site
#: (a page framed elsewhere could have its buttons clicked through an overlay: clickjacking).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "frame-ancestors 'self'",
    "X-Frame-Options": "SAMEORIGIN",
}


class Refused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def mask(*values: str) -> None:
    """Register with the task-side masker and the API server's own (its access log uses it)."""
    from airflow._shared.secrets_masker import secrets_masker as server_masker
    from airflow.sdk.log import mask_secret

    for value in values:
        if value:
            server_masker.mask_secret(value)
            mask_secret(value)


@dataclass(frozen=True)
class Paths:
    """Where the pages are, read from the request (the plugin's mount and any prefix the API
    server runs under). Links and form targets are absolute: the pages are served at several
    depths (``/ibkr/connect``, ``/ibkr/connect/callback``, ``/ibkr/connect/disconnect``), where
    one relative link cannot be right for all of them."""

    home: str  # Airflow's page that frames Connect IBKR (``/plugin/ibkr_connect``)
    start: str
    disconnect: str
    callback: str  # also the path of the consent's state cookie, set at the start, deleted at the end

    @classmethod
    def of(cls, request: Request) -> Paths:
        names = ("ibkr_connect", "ibkr_connect_start", "ibkr_disconnect", "ibkr_connect_callback")
        connect, *others = (request.url_for(name).path for name in names)
        root = connect.removesuffix("/ibkr/connect")
        return cls(f"{root}/plugin/{CONNECT_ROUTE}", *others)


#: Airflow frames plugin views in a sandboxed iframe (scripts, same origin and forms allowed; no
#: top navigation), and IBKR's login page must not be framed. So a form or link marked
#: ``target="_top"`` is re-made in the top window's document (same origin) and submitted or
#: followed from there: the navigation is the Airflow page's own, not the framed page's. Opened
#: by itself, the page submits and follows as usual.
LEAVE_THE_FRAME = """<script>
(function () {
  if (window.top === window) return;
  function copy(element) {
    var host = window.top.document, made = host.createElement(element.tagName);
    made.style.display = "none";
    if (element.tagName === "FORM") {
      made.method = element.method; made.action = element.action;
      new FormData(element).forEach(function (value, name) {
        var field = host.createElement("input");
        field.type = "hidden"; field.name = name; field.value = value; made.appendChild(field);
      });
    } else { made.href = element.href; }
    made.target = "_self";
    host.body.appendChild(made);
    return made;
  }
  document.addEventListener("submit", function (event) {
    if (event.target.target !== "_top") return;
    event.preventDefault(); copy(event.target).submit();
  });
  document.addEventListener("click", function (event) {
    var link = event.target.closest("a[target=_top]");
    if (!link) return;
    event.preventDefault(); copy(link).click();
  });
})();
</script>"""


def page(title: str, body: str, home: str | None, status: int = 200) -> HTMLResponse:
    """A page of its own (not Airflow's React UI), with links back to Connect IBKR (``home``;
    None on the Connect IBKR page itself) and to Airflow's connections."""
    back = f'<a href="{html.escape(home)}" target="_top">Connect IBKR</a> &middot; ' if home else ""
    return HTMLResponse(
        f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2rem;max-width:60rem}}table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:.4rem .8rem;text-align:left}}.ok{{color:#060}}.bad{{color:#a00}}
label{{display:block;margin:.5rem 0}}</style></head>
<body><h1>{html.escape(title)}</h1>{body}
<p>{back}<a href="/connections" target="_top">Airflow connections</a></p>{LEAVE_THE_FRAME}</body></html>""",
        status_code=status,
        headers=PAGE_HEADERS,
    )


async def logged_in_user(request: Request) -> Any:
    """The logged-in Airflow user (the UI's ``_token`` cookie, or a bearer token)."""
    from airflow.api_fastapi.core_api.security import resolve_user_from_token
    from fastapi import HTTPException

    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else request.cookies.get("_token")
    try:
        return await resolve_user_from_token(token)
    except HTTPException:
        raise Refused(401, "Log in to Airflow first, then open this page again.") from None


async def current_user(request: Request, method: Literal["GET", "PUT"]) -> Any:
    """The logged-in Airflow user, allowed by the auth manager to ``method`` connections."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails

    user = await logged_in_user(request)
    if not get_auth_manager().is_authorized_connection(method=method, user=user, details=ConnectionDetails()):
        raise Refused(403, "Your Airflow role may not edit connections; ask an admin.")
    return user


def csrf_token(user: Any) -> str:
    from airflow.api_fastapi.auth.tokens import get_signing_key

    key = get_signing_key("api", "secret_key").encode()
    return hmac.new(key, f"ibkr-connect:{user.get_id()}".encode(), hashlib.sha256).hexdigest()


async def checked_form(request: Request, user: Any) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    data = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
    if not same_secret(data.get("csrf", ""), csrf_token(user)):
        raise Refused(403, "This form expired or did not come from this page. Open Connect IBKR again.")
    return data
