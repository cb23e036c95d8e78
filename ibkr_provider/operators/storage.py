"""Where operators write files: any ObjectStoragePath location, each file whole or not at all.

A reader (the portfolio page, a downstream DAG, an Asset event's consumer) must never see half a
snapshot: a worker killed mid-write left a truncated file that looked like a short portfolio. On
a local disk a file is written under a hidden temporary name and renamed into place (a rename is
atomic within a file system); an object store's PUT is already all-or-nothing, so the object is
written once under its final name.
"""

from __future__ import annotations

import secrets

from airflow.sdk import ObjectStoragePath


def storage_path(location: str) -> ObjectStoragePath:
    """An ObjectStoragePath for a URL (``s3://...``, ``file:///...``) or a plain local path."""
    return ObjectStoragePath(location if "://" in location else f"file://{location}")


def write_whole(target: ObjectStoragePath, data: str | bytes) -> None:
    """Write ``data`` to ``target`` so that readers see the whole file or none of it."""
    payload = data.encode() if isinstance(data, str) else data
    if target.protocol not in ("file", "local", ""):
        target.write_bytes(payload)
        return
    partial = target.parent / f".{target.name}.partial-{secrets.token_hex(4)}"
    try:
        partial.write_bytes(payload)
        partial.rename(target)
    finally:
        if partial.exists():
            partial.unlink()
