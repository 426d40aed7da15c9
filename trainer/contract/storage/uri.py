"""Storage URIs: parse_uri reads s3://, file:// and plain paths; open_storage picks the backend.

Kept apart from base.py because open_storage needs both backends, which themselves import base.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from trainer.contract.storage.base import Storage, StorageSettings
from trainer.contract.storage.local import LocalStorage
from trainer.contract.storage.s3 import S3Storage

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def parse_uri(uri: str) -> tuple[str, str, str] | Path:
    """("s3", bucket, prefix) for s3:// URIs, a Path for file:// URIs and plain paths, else ValueError."""
    match = _SCHEME.match(uri)
    if not uri:
        raise ValueError("empty storage URI")
    if not match:
        return Path(uri).expanduser()
    scheme = match.group(1).lower()
    if scheme == "s3":
        bucket, _, prefix = uri[len(match.group(0)) :].partition("/")
        if not bucket:
            raise ValueError(f"{uri!r}: an s3:// URI needs a bucket (s3://bucket/prefix)")
        return "s3", bucket, prefix
    if scheme == "file":
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"{uri!r}: a file:// URI needs an absolute local path (file:///srv/data)")
        return Path(unquote(parts.path))
    raise ValueError(
        f"{uri!r}: unsupported storage URI (want s3://bucket/prefix, file:///abs/path or a path)"
    )


def open_storage(uri: str, settings: StorageSettings | None = None) -> Storage:
    """S3Storage for "s3://bucket/prefix", LocalStorage for "file:///abs/path" or a plain path.

    An s3:// URI needs the `settings` its caller read (StorageSettings() once, at an entry point: the
    command line, the job driver, the service); nothing here reads the environment."""
    where = parse_uri(uri)
    if isinstance(where, Path):
        return LocalStorage(where)
    if settings is None:
        raise ValueError(f"{uri!r}: an s3:// store needs storage settings (StorageSettings) from its caller")
    _, bucket, prefix = where
    return S3Storage(bucket, prefix, settings)
