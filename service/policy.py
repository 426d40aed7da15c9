"""What jobs this service accepts, beyond the spec's own validation: where their data may come
from, and whether this service can ever run them (service.capacity).

A job's `data.source` is the built-in synthetic set, or a dataset under one of the configured
`allowed_dataset_roots`: a local folder (plain absolute path or file:///) or an s3://bucket/prefix.
Refused, each with a message naming `data.source`: other schemes (http, https, ftp, ...), relative
paths (the job runs in another working directory), any `..` segment (also percent-encoded), local
paths whose real location (symlinks resolved) is outside every local root, and s3 URIs outside
every s3 root (compared on whole path segments: s3://data/voc does not admit s3://data/voc-private).

Capacity (service.capacity): the operator's limits, the embedded head's CPUs, GPUs and memory, a
cluster worker's memory; each refusal names the field.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from service.capacity import check_capacity
from service.settings import ServiceSettings
from trainer.jobs.spec import JobSpec
from trainer.storage import parse_uri

FIELD = "data.source"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def check_job_spec(spec: JobSpec, settings: ServiceSettings) -> None:
    """ValueError naming the field if the service must not run `spec`."""
    check_dataset_source(spec.data.source, settings)
    check_capacity(spec, settings)


def check_dataset_source(source: str, settings: ServiceSettings) -> None:
    if source == "synthetic":
        return
    if "\x00" in source or not source.isprintable():
        raise ValueError(f"{FIELD}: {source!r} refused: control characters are not allowed in a dataset URI")
    how = "set allowed_dataset_roots (ANCHOR_OPT_ALLOWED_DATASET_ROOTS) to admit a dataset folder or bucket"
    if not settings.allowed_dataset_roots:
        raise ValueError(f"{FIELD}: {source!r} refused: this service admits only 'synthetic' ({how})")
    if ".." in re.split(r"[/\\]", unquote(source)):
        raise ValueError(f"{FIELD}: {source!r} refused: '..' is not allowed in a dataset URI")
    match = _SCHEME.match(source)
    scheme = match.group(1).lower() if match else "file"
    if scheme not in ("s3", "file"):
        raise ValueError(f"{FIELD}: scheme {scheme!r} is not allowed (use {_schemes(settings)})")
    if scheme not in settings.allowed_schemes:
        raise ValueError(f"{FIELD}: scheme {scheme!r} is off on this service (use {_schemes(settings)})")
    try:
        where = parse_uri(source)
    except ValueError as exc:
        raise ValueError(f"{FIELD}: {exc}") from None
    if isinstance(where, Path):
        _check_local(source, where, settings.allowed_dataset_roots, how)
    else:
        _check_s3(source, where, settings.allowed_dataset_roots, how)


def _check_local(source: str, path: Path, roots: list[str], how: str) -> None:
    if not path.is_absolute():
        raise ValueError(f"{FIELD}: {source!r} is a relative path; give an absolute path or a file:/// URI")
    real = Path(os.path.realpath(path))
    local_roots = [Path(os.path.realpath(parse_uri(r))) for r in roots if not r.startswith("s3://")]
    if not any(real == root or root in real.parents for root in local_roots):
        allowed = ", ".join(map(str, local_roots)) or "none"
        raise ValueError(f"{FIELD}: {source!r} is outside the allowed dataset folders ({allowed}; {how})")


def _check_s3(source: str, where: tuple[str, str, str], roots: list[str], how: str) -> None:
    _, bucket, prefix = where
    path = PurePosixPath(bucket, *[p for p in prefix.split("/") if p])
    s3_roots = []
    for root in roots:
        if root.startswith("s3://"):
            _, rb, rp = parse_uri(root)
            s3_roots.append(PurePosixPath(rb, *[p for p in rp.split("/") if p]))
    if not any(path == root or root in path.parents for root in s3_roots):
        allowed = ", ".join(f"s3://{r}" for r in s3_roots) or "none"
        raise ValueError(f"{FIELD}: {source!r} is outside the allowed dataset buckets ({allowed}; {how})")


def _schemes(settings: ServiceSettings) -> str:
    names = [f"{s}://" if s == "s3" else "an absolute path or file:///" for s in settings.allowed_schemes]
    return " or ".join(["'synthetic'", *names])
