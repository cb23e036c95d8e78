"""Where operators write files: any ObjectStoragePath location."""

from __future__ import annotations

from airflow.sdk import ObjectStoragePath


def storage_path(location: str) -> ObjectStoragePath:
    """An ObjectStoragePath for a URL (``s3://...``, ``file:///...``) or a plain local path."""
    return ObjectStoragePath(location if "://" in location else f"file://{location}")
