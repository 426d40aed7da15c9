"""What jobs this service accepts, beyond the spec's own validation: where their data may come
from, and whether this service can ever run them (service.capacity).

A job's `data.source` is the built-in synthetic set, or a dataset under one of the caller's dataset
roots (its token's `dataset_roots`, else the service's `allowed_dataset_roots`): a local folder
(plain absolute path or file:///) or an s3://bucket/prefix. The URI means what
`trainer.contract.storage.parse_uri` says: the same parser the job's reader uses, so what is checked here is
exactly what the worker opens. Refused, each with a message naming the field: other schemes (http,
https, ftp, ...), relative paths (the job runs in another working directory), any `..` segment (also
percent-encoded), local paths whose real location (symlinks resolved) is outside every local root or
inside the S3 mirror cache, s3 URIs outside every s3 root (compared on whole path segments:
s3://data/voc does not admit s3://data/voc-private), and splits (`data.train_split`,
`data.val_split`) that are absolute or climb out with `..`.

An admitted spec runs with `data.allowed_root` set to the root that admitted its source (or the
narrower one the caller gave, itself checked): the worker checks again, when it opens the dataset,
that the source still resolves inside it, and reads nothing outside the source's folder
(trainer.data.root). Symlinks are resolved here and again there.

`model.pretrained` (a weights file to start from) is admitted by the same rules and runs with
`model.pretrained_allowed_root` set the same way (`admit_pretrained`).

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
from trainer.contract.spec import JobSpec
from trainer.contract.storage import InvalidKey, check_key, parse_uri

FIELD = "data.source"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_HOW = "set allowed_dataset_roots (ANCHOR_OPT_ALLOWED_DATASET_ROOTS) to admit a dataset folder or bucket"


def check_job_spec(
    spec: JobSpec, settings: ServiceSettings, dataset_roots: list[str] | None = None
) -> JobSpec:
    """The spec as the job will run it (`data.allowed_root` set), or ValueError naming the field if
    the service must not run `spec`. `dataset_roots`: the caller's own roots (from its token), if any."""
    if spec.device != "auto":
        raise ValueError(
            f"device: {spec.device!r} has no effect on a job: its Ray workers train on the GPUs "
            "resources.gpus_per_worker gives them (leave device as auto)"
        )
    spec = admit_dataset(spec, settings, dataset_roots)
    spec = admit_pretrained(spec, settings, dataset_roots)
    check_capacity(spec, settings)
    return spec


def admit_pretrained(
    spec: JobSpec, settings: ServiceSettings, dataset_roots: list[str] | None = None
) -> JobSpec:
    """`spec` with `model.pretrained_allowed_root` set to the root that admitted `model.pretrained`
    (by `data.source`'s rules: a file under one of the caller's dataset roots, local or s3), or
    ValueError naming the field. The worker opens it only inside that root (trainer.model.pretrained)."""
    model = spec.model
    if model.pretrained is None:
        if model.pretrained_allowed_root is not None:
            raise ValueError("model.pretrained_allowed_root: set without model.pretrained")
        return spec
    roots = settings.allowed_dataset_roots if dataset_roots is None else dataset_roots
    bound = check_dataset_source(model.pretrained, settings, roots, field="model.pretrained")
    if model.pretrained_allowed_root is not None:
        field = "model.pretrained_allowed_root"
        check_dataset_source(model.pretrained_allowed_root, settings, roots, field=field)
        if not _contains(model.pretrained_allowed_root, model.pretrained):
            raise ValueError(
                f"{field}: {model.pretrained_allowed_root!r} does not contain model.pretrained "
                f"{model.pretrained!r}"
            )
        bound = model.pretrained_allowed_root
    return spec.model_copy(update={"model": model.model_copy(update={"pretrained_allowed_root": bound})})


def admit_dataset(
    spec: JobSpec, settings: ServiceSettings, dataset_roots: list[str] | None = None
) -> JobSpec:
    """`spec` with `data.allowed_root` set to the root that admitted its source; ValueError naming the
    field when the source, a split or a given allowed_root is refused."""
    data = spec.data
    if data.is_synthetic:
        return spec
    roots = settings.allowed_dataset_roots if dataset_roots is None else dataset_roots
    for field, split in (("data.train_split", data.train_split), ("data.val_split", data.val_split)):
        check_split(field, split)
    bound = check_dataset_source(data.source, settings, roots)
    if data.allowed_root is not None:
        check_dataset_source(data.allowed_root, settings, roots, field="data.allowed_root")
        if not _contains(data.allowed_root, data.source):
            raise ValueError(
                f"data.allowed_root: {data.allowed_root!r} does not contain data.source {data.source!r}"
            )
        bound = data.allowed_root
    return spec.model_copy(update={"data": data.model_copy(update={"allowed_root": bound})})


def check_split(field: str, split: str) -> None:
    """A split names a part of the dataset by a relative name or path ("train", "VOC2007/trainval",
    "a+b"); ValueError naming the field for an absolute one or one that climbs out with `..`."""
    if not split.isprintable():
        raise ValueError(f"{field}: {split!r} refused: control characters are not allowed in a split")
    for part in (p.strip() for p in split.split("+")):
        if part.startswith(("/", "\\")) or _SCHEME.match(part):  # also C:
            raise ValueError(
                f"{field}: {part!r} refused: a split is a name or a path relative to data.source"
            )
        if ".." in re.split(r"[/\\]", unquote(part)):
            raise ValueError(f"{field}: {part!r} refused: '..' is not allowed in a split")


def check_dataset_source(
    source: str, settings: ServiceSettings, roots: list[str] | None = None, field: str = FIELD
) -> str | None:
    """The root (of `roots`, default the settings' allowed_dataset_roots) that admits `source`, the
    deepest when several do; None for the synthetic set. ValueError naming `field` if refused."""
    if source == "synthetic" and field == FIELD:
        return None
    roots = settings.allowed_dataset_roots if roots is None else roots
    if "\x00" in source or not source.isprintable():
        raise ValueError(f"{field}: {source!r} refused: control characters are not allowed in a dataset URI")
    if not roots:
        raise ValueError(f"{field}: {source!r} refused: this service admits only 'synthetic' ({_HOW})")
    if ".." in re.split(r"[/\\]", unquote(source)):
        raise ValueError(f"{field}: {source!r} refused: '..' is not allowed in a dataset URI")
    match = _SCHEME.match(source)
    scheme = match.group(1).lower() if match else "file"
    if scheme not in ("s3", "file"):
        raise ValueError(f"{field}: scheme {scheme!r} is not allowed (use {_schemes(settings)})")
    if scheme not in settings.allowed_schemes:
        raise ValueError(f"{field}: scheme {scheme!r} is off on this service (use {_schemes(settings)})")
    try:
        where = parse_uri(source)  # exactly what trainer.data.sources opens
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None
    if isinstance(where, Path):
        return _check_local(field, source, where, roots, settings)
    return _check_s3(field, source, where, roots)


def _check_local(field: str, source: str, path: Path, roots: list[str], settings: ServiceSettings) -> str:
    if not path.is_absolute():
        raise ValueError(f"{field}: {source!r} is a relative path; give an absolute path or a file:/// URI")
    real = Path(os.path.realpath(path))
    cache = Path(os.path.realpath(settings.s3.cache_dir))
    if real == cache or cache in real.parents:
        raise ValueError(
            f"{field}: {source!r} is inside the S3 mirror cache ({cache}), which is never a dataset"
        )
    found = [(r, root) for r in roots if isinstance(root := parse_uri(r), Path)]
    inside = [(len(root.parts), r) for r, root in found if _under(real, Path(os.path.realpath(root)))]
    if not inside:
        allowed = ", ".join(str(Path(os.path.realpath(root))) for _, root in found) or "none"
        raise ValueError(f"{field}: {source!r} is outside the allowed dataset folders ({allowed}; {_HOW})")
    return max(inside)[1]


def _check_s3(field: str, source: str, where: tuple[str, str, str], roots: list[str]) -> str:
    _, bucket, prefix = where
    try:
        if prefix.strip("/"):
            check_key(prefix.strip("/"), source)  # no empty, "." or ".." segments: what the mirror accepts
    except InvalidKey:
        raise ValueError(f"{field}: {source!r} has an empty or '.' path segment") from None
    path = _s3_path(bucket, prefix)
    found = [(r, _s3_path(*parse_uri(r)[1:])) for r in roots if r.startswith("s3://")]
    inside = [(len(root.parts), r) for r, root in found if _under(path, root)]
    if not inside:
        allowed = ", ".join(f"s3://{root}" for _, root in found) or "none"
        raise ValueError(f"{field}: {source!r} is outside the allowed dataset buckets ({allowed}; {_HOW})")
    return max(inside)[1]


def _s3_path(bucket: str, prefix: str) -> PurePosixPath:
    return PurePosixPath(bucket, *[p for p in prefix.split("/") if p])


def _under(path: PurePosixPath | Path, root: PurePosixPath | Path) -> bool:
    return path == root or root in path.parents


def _contains(outer: str, inner: str) -> bool:
    """Whether the URI `inner` lies inside `outer` (both already admitted), symlinks resolved."""
    a, b = parse_uri(outer), parse_uri(inner)
    if isinstance(a, Path) and isinstance(b, Path):
        return _under(Path(os.path.realpath(b)), Path(os.path.realpath(a)))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return _under(_s3_path(b[1], b[2]), _s3_path(a[1], a[2]))
    return False


def _schemes(settings: ServiceSettings) -> str:
    names = [f"{s}://" if s == "s3" else "an absolute path or file:///" for s in settings.allowed_schemes]
    return " or ".join(["'synthetic'", *names])
