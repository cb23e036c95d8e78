"""Validated, immutable settings for one IBKR client.

Everything a user can get wrong is checked here, before any request is sent, and every error
names the connection field and the fix (see :class:`~ibkr_provider.client.errors.IbkrConfigError`).
"""

from __future__ import annotations

import base64
import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ibkr_provider.client import fields
from ibkr_provider.client.errors import IbkrConfigError, IbkrValidationError
from ibkr_provider.client.hosts import DEFAULT_BASE_URL
from ibkr_provider.client.http.limits import DEFAULT_GATEWAY_RATE_LIMIT, DEFAULT_OAUTH_RATE_LIMIT
from ibkr_provider.client.http.retries import RetryPolicy

if TYPE_CHECKING:
    from ibkr_provider.client.oauth1 import OAuth1aCredentials

DEFAULT_CLIENT_KEY_ID = "main"
DEFAULT_TIMEOUT_SECONDS = 30.0
#: IBKR: "It is expected to call this endpoint approximately every 60 seconds" (/tickle).
DEFAULT_TICKLE_INTERVAL_SECONDS = 60.0
#: Renew the session this long before the access token expires (capped at half its lifetime).
DEFAULT_REFRESH_LEAD_SECONDS = 60.0
DEFAULT_SESSION_CACHE_DIR = Path("~/.cache/airflow-provider-ibkr/sessions")

_PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 .]+)-----(.*?)-----END \1-----", re.DOTALL)


class AuthType(str, enum.Enum):
    """How the client authenticates.

    ``oauth2``: IBKR OAuth 2.0 with ``private_key_jwt`` client authentication (RFC 7521/7523),
    the only client authentication IBKR supports for OAuth 2.0.
    ``oauth1a``: IBKR's self-service OAuth 1.0a for individual accounts (consumer key, access
    token and secret, signature and encryption keys, DH parameters): a live session token.
    ``gateway``: a Client Portal Gateway the user runs and logs in to; it holds the session, so
    no Authorization header is sent.
    """

    OAUTH2 = "oauth2"
    OAUTH1A = "oauth1a"
    GATEWAY = "gateway"


def normalize_pem(text: str, field: str = "private_key") -> str:
    """Rebuild a PEM block whose newlines were lost.

    Browser inputs turn newlines into spaces or drop them; environment variables often carry
    ``\\n`` escapes. The base64 body is re-wrapped at 64 characters between its original
    BEGIN/END lines. Raises :class:`IbkrConfigError` (without echoing the key) when no PEM
    block is found.
    """
    cleaned = text.replace("\\r", "").replace("\\n", "\n").replace("\r", "").strip()
    match = _PEM_RE.search(cleaned)
    if match is None:
        raise IbkrConfigError(
            field,
            "no PEM block found; paste the whole text including its '-----BEGIN ...-----' and "
            f"'-----END ...-----' lines, or set {field}_path instead",
        )
    label, body = match.group(1), match.group(2)
    headers: list[str] = []
    # Traditional encrypted PEMs carry "Proc-Type:"/"DEK-Info:" header lines before the body.
    lines = [ln.strip() for ln in body.strip().splitlines()]
    while lines and ":" in lines[0]:
        headers.append(lines.pop(0))
    b64 = re.sub(r"\s+", "", "".join(lines))
    wrapped = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    header_block = [*headers, ""] if headers else []
    return "\n".join([f"-----BEGIN {label}-----", *header_block, *wrapped, f"-----END {label}-----", ""])


def pem_block(text: str) -> tuple[str, bytes]:
    """(label, DER bytes) of the first PEM block in ``text``; ValueError when there is none or
    its body is not base64. (asn1crypto's reader refuses labels with a dot, such as
    ``X9.42 DH PARAMETERS``.)"""
    match = _PEM_RE.search(text)
    if match is None:
        raise ValueError("no PEM block")
    body = "".join(line for line in match.group(2).strip().splitlines() if ":" not in line)
    return match.group(1), base64.b64decode(re.sub(r"\s+", "", body), validate=True)


def read_pem(values: Mapping[str, Any], field: str) -> str | None:
    """The PEM in ``values[field]``, or read from the file ``values[field + "_path"]``; repaired
    by :func:`normalize_pem`. None when neither is set."""
    inline = str(values.get(field) or "").strip() or None
    path_text = str(values.get(f"{field}_path") or "").strip() or None
    if inline and path_text:
        raise IbkrConfigError(field, f"set either {field} or {field}_path, not both")
    if path_text:
        path = Path(path_text).expanduser()
        try:
            inline = path.read_text()
        except OSError as exc:
            raise IbkrConfigError(
                f"{field}_path",
                f"cannot read {str(path)!r} ({exc.strerror}); check the path and that the worker can read it",
            ) from None
    return normalize_pem(inline, field) if inline else None


def parse_verify(value: Any) -> bool | str:
    """Interpret the ``verify`` field: true/false (also as strings) or a CA bundle path."""
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in {"true", "1", "yes", "on"}:
        return True
    if text.lower() in {"false", "0", "no", "off"}:
        return False
    if not Path(text).expanduser().is_file():
        raise IbkrConfigError(
            "verify", f"CA bundle {text!r} does not exist; give true, false or the path of a PEM CA bundle"
        )
    return str(Path(text).expanduser())


def parse_timeout(value: Any) -> float:
    """Interpret the ``timeout`` field (seconds, > 0 and at most ten minutes)."""
    seconds = parse_number(
        "timeout", value, DEFAULT_TIMEOUT_SECONDS, minimum=0.001, maximum=600, example="30"
    )
    return seconds


def parse_bool(field_name: str, value: Any, default: bool) -> bool:
    """Interpret a boolean connection field given as a bool or a string."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "1", "yes", "on"}:
        return True
    if text in {"false", "0", "no", "off"}:
        return False
    raise IbkrConfigError(field_name, f"{value!r} is not true or false")


def parse_number(
    field_name: str, value: Any, default: float, *, minimum: float, maximum: float, example: str
) -> float:
    """Interpret a numeric connection field: finite, from ``minimum`` to ``maximum``. (NaN
    compares false with every bound, so an unchecked "nan" once made the client log in again on
    every request, and "inf" stopped the keep-alive thread while its status said it ran.)"""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise IbkrConfigError(field_name, f"{value!r} is not a number, e.g. {example}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise IbkrConfigError(field_name, f"{str(value)[:80]!r} is not a number, e.g. {example}") from None
    if not math.isfinite(number) or not minimum <= number <= maximum:
        raise IbkrConfigError(
            field_name,
            f"{str(value)[:80]!r} is out of range: give {minimum:g} to {maximum:g}, e.g. {example}",
        )
    return number


def parse_account_id(value: str | None) -> str | None:
    """The connection's default ``account_id``, checked like every account id (letters then
    digits) so that it can go into a URL path."""
    if value is None:
        return None
    try:
        return fields.account_id(value)
    except IbkrValidationError:
        raise IbkrConfigError(
            "account_id", f"{value[:80]!r} is not an IBKR account id: letters then digits, such as U1234567"
        ) from None


def url_with_port(url: str, port: Any) -> str:
    """``url`` with the connection's ``port`` added when the URL names none (0 or empty: none)."""
    parts = urlsplit(url)
    if port in (None, "", 0, "0") or parts.port is not None:
        return url
    try:
        number = int(port)
    except (TypeError, ValueError):
        raise IbkrConfigError("port", f"{port!r} is not a port number") from None
    if not 0 < number < 65536:
        raise IbkrConfigError("port", f"{port!r} is not a port number (1-65535)")
    return parts._replace(netloc=f"{parts.netloc}:{number}").geturl()


def parse_base_url(value: str | None, port: Any = None) -> str:
    """Check the API base URL (connection ``host``: a URL or a bare host name such as
    ``api.ibkr.com``) and strip trailing slashes and API suffixes; the connection's ``port`` is
    added when the host names none."""
    url = (value or DEFAULT_BASE_URL).strip().rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    try:
        parts = urlsplit(url)
        ok = parts.scheme in {"http", "https"} and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        ok = False
    if not ok:
        raise IbkrConfigError("host", f"{value!r} is not an http(s) URL; use e.g. {DEFAULT_BASE_URL}")
    url = url_with_port(url, port)
    for suffix in ("/v1/api", "/v1/portal"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


@dataclass(frozen=True)
class IbkrClientConfig:
    """Settings of one IBKR client (one IBKR username at one API host).

    Build it with :meth:`from_mapping` to get the field checks; the dataclass itself trusts
    its arguments. ``private_key_pem`` never appears in ``repr``.
    """

    base_url: str = DEFAULT_BASE_URL
    auth_type: AuthType = AuthType.OAUTH2
    client_id: str | None = None
    client_key_id: str = DEFAULT_CLIENT_KEY_ID
    credential: str | None = None
    private_key_pem: str | None = field(default=None, repr=False)
    #: The validated OAuth 1.0a credentials (auth type ``oauth1a``).
    oauth1a: OAuth1aCredentials | None = field(default=None, repr=False)
    account_id: str | None = None
    ip: str | None = None
    verify: bool | str = True
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    #: ``file`` (default), ``file:///dir``, ``memory`` or ``redis://host:port/db``.
    session_cache: str = "file"
    #: Directory of the ``file`` cache (the hook sets it from Airflow's ``[ibkr] session_cache_dir``).
    session_cache_dir: Path = DEFAULT_SESSION_CACHE_DIR
    #: Global requests per second for this username; None uses IBKR's documented default.
    rate_limit: float | None = None
    tickle_interval: float = DEFAULT_TICKLE_INTERVAL_SECONDS
    session_refresh_lead: float = DEFAULT_REFRESH_LEAD_SECONDS
    #: Take the brokerage session over from other logins when opening a new session.
    compete_on_login: bool = True
    #: Take it over even from another connection of this deployment that holds it (see holders).
    displace_other_connections: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def effective_rate_limit(self) -> float:
        """Requests per second the pacer allows (``rate_limit`` or IBKR's default for the mode)."""
        if self.rate_limit is not None:
            return self.rate_limit
        return DEFAULT_GATEWAY_RATE_LIMIT if self.auth_type is AuthType.GATEWAY else DEFAULT_OAUTH_RATE_LIMIT

    @property
    def identity(self) -> tuple[str | None, str | None]:
        """Who the session belongs to, for the shared cache's key: (client id, username) for
        OAuth 2.0, (consumer key, access token) for OAuth 1.0a."""
        if self.oauth1a is not None:
            return self.oauth1a.consumer_key, self.oauth1a.access_token
        return self.client_id, self.credential

    @property
    def token_url(self) -> str:
        """OAuth 2.0 token endpoint (step 1)."""
        return f"{self.base_url}/oauth2/api/v1/token"

    @property
    def sso_sessions_url(self) -> str:
        """SSO session endpoint (step 2) that turns an access token into the API bearer."""
        return f"{self.base_url}/gw/api/v1/sso-sessions"

    @property
    def api_url(self) -> str:
        """Root of the Web API (``/v1/api``) that every account and trading call goes to."""
        return f"{self.base_url}/v1/api"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> IbkrClientConfig:
        """Validate raw settings (as found in an Airflow connection) and build the config.

        Keys: ``base_url``, ``auth_type``, ``client_id``, ``client_key_id``, ``credential``,
        ``private_key``, ``private_key_path``, ``account_id``, ``ip``, ``verify``, ``timeout``,
        ``session_cache``, ``session_cache_dir``, ``rate_limit``, ``tickle_interval``,
        ``session_refresh_lead``, ``compete_on_login``, ``max_retries``, ``max_retry_seconds``.
        """

        def text(key: str) -> str | None:
            raw = values.get(key)
            if raw is None:
                return None
            stripped = str(raw).strip()
            return stripped or None

        raw_auth = (text("auth_type") or AuthType.OAUTH2.value).lower()
        try:
            auth_type = AuthType(raw_auth)
        except ValueError:
            raise IbkrConfigError(
                "auth_type", f"{raw_auth!r} is not supported; use 'oauth2', 'oauth1a' or 'gateway'"
            ) from None
        oauth1a = None
        if auth_type is AuthType.OAUTH1A:
            from ibkr_provider.client.oauth1_config import parse_oauth1a

            oauth1a = parse_oauth1a(values)

        config = cls(
            base_url=parse_base_url(text("base_url"), values.get("port")),
            auth_type=auth_type,
            client_id=text("client_id"),
            client_key_id=text("client_key_id") or DEFAULT_CLIENT_KEY_ID,
            credential=text("credential"),
            private_key_pem=read_pem(values, "private_key") if auth_type is AuthType.OAUTH2 else None,
            oauth1a=oauth1a,
            account_id=parse_account_id(text("account_id")),
            ip=text("ip"),
            verify=parse_verify(values.get("verify")),
            timeout=parse_timeout(values.get("timeout")),
            session_cache=text("session_cache") or "file",
            session_cache_dir=Path(text("session_cache_dir") or DEFAULT_SESSION_CACHE_DIR).expanduser(),
            rate_limit=(
                parse_number(
                    "rate_limit", values.get("rate_limit"), 0.0, minimum=0.01, maximum=1000, example="10"
                )
                if text("rate_limit")
                else None
            ),
            tickle_interval=parse_number(
                "tickle_interval",
                values.get("tickle_interval"),
                DEFAULT_TICKLE_INTERVAL_SECONDS,
                minimum=1,
                maximum=3600,
                example="60",
            ),
            session_refresh_lead=parse_number(
                "session_refresh_lead",
                values.get("session_refresh_lead"),
                DEFAULT_REFRESH_LEAD_SECONDS,
                minimum=0,
                maximum=86_400,
                example="60",
            ),
            compete_on_login=parse_bool("compete_on_login", values.get("compete_on_login"), True),
            displace_other_connections=parse_bool(
                "displace_other_connections", values.get("displace_other_connections"), False
            ),
            retry=RetryPolicy(
                max_attempts=int(
                    parse_number(
                        "max_retries", values.get("max_retries"), 4, minimum=0, maximum=100, example="4"
                    )
                )
                + 1,
                max_seconds=parse_number(
                    "max_retry_seconds",
                    values.get("max_retry_seconds"),
                    60.0,
                    minimum=0.1,
                    maximum=3600,
                    example="60",
                ),
            ),
        )
        config.check_complete()
        return config

    def check_complete(self) -> None:
        """Raise :class:`IbkrConfigError` for the first setting the chosen auth type lacks."""
        if self.auth_type is AuthType.GATEWAY:
            return
        if self.auth_type is AuthType.OAUTH1A:
            if self.oauth1a is None:
                raise IbkrConfigError("auth_type", "oauth1a settings are missing")
            return
        if not self.client_id:
            raise IbkrConfigError(
                "login", "the OAuth 2.0 client id is missing; put it in the connection's login"
            )
        if not self.private_key_pem:
            raise IbkrConfigError(
                "private_key", "oauth2 needs the RSA private key: set private_key (PEM) or private_key_path"
            )
        if not self.credential:
            raise IbkrConfigError("credential", "oauth2 needs the IBKR username the session is opened for")
        if not self.ip:
            raise IbkrConfigError(
                "ip",
                "oauth2 needs the public IP address your requests leave from (IBKR embeds it in the SSO "
                "session); it is never looked up automatically",
            )
