"""Where operators write files: any ObjectStoragePath location, each file whole or not at all.

A reader (the portfolio page, a downstream DAG, an Asset event's consumer) must never see half a
snapshot: a worker killed mid-write left a truncated file that looked like a short portfolio. On
a local disk a file is written under a hidden temporary name and renamed into place (a rename is
atomic within a file system); an object store's upload is already all-or-nothing (a multipart
upload is published when it completes), so the object is written once under its final name.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import IO

from airflow.sdk import ObjectStoragePath


def storage_path(location: str) -> ObjectStoragePath:
    """An ObjectStoragePath for a URL (``s3://...``, ``file:///...``) or a plain local path."""
    return ObjectStoragePath(location if "://" in location else f"file://{location}")


@contextlib.contextmanager
def whole_file(target: ObjectStoragePath, mode: str = "w") -> Iterator[IO[str]]:
    """A stream that becomes ``target`` when the block ends without an error; on an error
    nothing is published under ``target``. Rows can be written as they come (memory stays flat
    however large the file grows)."""
    if target.protocol not in ("file", "local", ""):
        with target.open(mode) as stream:  # type: ignore[no-untyped-call]
            yield stream
        return
    partial = target.parent / f".{target.name}.partial-{secrets.token_hex(4)}"
    try:
        with partial.open(mode) as stream:  # type: ignore[no-untyped-call]
            yield stream
        partial.rename(target)
    finally:
        if partial.exists():
            partial.unlink()


def write_whole(target: ObjectStoragePath, data: str | bytes) -> None:
    """Write ``data`` to ``target`` so that readers see the whole file or none of it."""
    with whole_file(target, "wb" if isinstance(data, bytes) else "w") as stream:
        stream.write(data)  # type: ignore[arg-type]
