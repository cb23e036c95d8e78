"""PEM text as people paste it: repaired, read from a file, or split into label and DER.

Browser inputs turn a PEM's newlines into spaces or drop them; environment variables carry
``\\n`` escapes; ``cryptography`` writes labels with a dot (``X9.42 DH PARAMETERS``) that other
readers refuse. Errors name the connection field and never echo the key.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ibkr_provider.client.errors import IbkrConfigError

_PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 .]+)-----(.*?)-----END \1-----", re.DOTALL)


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
