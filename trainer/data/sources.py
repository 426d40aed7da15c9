"""Opening a dataset by URI: local folder or file, or `s3://bucket/prefix`, in any known format.

    open_dataset("../shared/data/coco128", format="yolo", split="train")
    open_dataset("s3://datasets/voc/VOCdevkit/VOC2007", split="trainval")
    open_dataset("../shared/data/voc/pascal_train2007.json")          # a single annotation file
    open_dataset("VOCdevkit", format="voc", split="VOC2007/trainval+VOC2012/trainval")

Each format lives in its own module (`trainer.data.<format>`) with the same two functions:

    looks_like(root: Path, files: DataRoot) -> bool      does this folder or file have the layout?
    read(root, split, policy, check_images, files, classes=None) -> DetectionSet

`files` (trainer.data.root.DataRoot) is the only way a reader opens or probes a file: the dataset's
folder, outside which nothing is read (the job's confinement, checked at open time).

`split` names a part of the dataset the way its format does (COCO `train2017`, VOC `trainval`, a key
of a YOLO yaml, a Brainwash `.idl`); `a+b` concatenates splits. A source that is a single annotation
file is the whole set and `split` is ignored. S3 sources are mirrored into the local cache first
(trainer.contract.storage, keyed by ETag: a second open downloads nothing).

Torch-free, like the readers.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from trainer.data.classes import resolve_classes
from trainer.data.records import BadDataPolicy, DataError, DetectionSet, concat_sets
from trainer.data.root import DataRoot

log = logging.getLogger(__name__)

FORMATS = ("coco", "yolo", "voc", "brainwash")


def reader(fmt: str) -> ModuleType:
    """The module that reads `fmt` (coco, yolo, voc, brainwash)."""
    if fmt not in FORMATS:
        raise DataError(f"unknown dataset format {fmt!r}: expected one of {', '.join(FORMATS)} or auto")
    return importlib.import_module(f"trainer.data.{fmt}")


def detect_format(root: Path, files: DataRoot | None = None) -> str:
    """The one format whose layout `root` has; an error naming the candidates when zero or several fit."""
    files = files or DataRoot.of_source(root)
    matches = [fmt for fmt in FORMATS if reader(fmt).looks_like(root, files)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DataError(
            f"{root}: no known dataset layout (COCO annotations/*.json, YOLO images/ + labels/ with a "
            "yaml of names, VOC Annotations/ + ImageSets/Main/, Brainwash *.idl); set the format explicitly"
        )
    raise DataError(f"{root}: looks like several formats ({', '.join(matches)}); set the format explicitly")


# Called as objects of an s3:// source arrive in the cache: (objects done, objects in all).
FetchProgress = Callable[[int, int], None]


def local_root(source: str | Path, storage_settings=None, progress: FetchProgress | None = None) -> Path:
    """The local folder or file for `source`: a path, `file://` URI, or `s3://` URI (mirrored).

    The URI means what trainer.contract.storage.parse_uri says, the same parser the service's admission
    check uses, so what was checked is what is opened."""
    from trainer.contract.storage import StorageError, fetch_to_cache, parse_uri

    try:
        where = parse_uri(str(source))
    except ValueError as exc:
        raise DataError(f"{exc}: only local paths, file:// and s3:// URIs are supported") from None
    if isinstance(where, Path):
        if not where.exists():
            raise DataError(f"dataset source not found: {where}")
        return where
    if storage_settings is None:
        raise DataError(f"dataset source {source}: an s3:// source needs the run's storage settings")
    try:
        fetched = fetch_to_cache(str(source), storage_settings, progress)
    except StorageError as exc:  # a missing bucket or prefix is bad input like a missing folder
        raise DataError(f"dataset source: {exc}") from None
    log.info(
        "%s: %d objects downloaded, %d already cached in %s",
        source,
        fetched.downloaded,
        fetched.cached,
        fetched.local_path,
    )
    return fetched.local_path


def data_root(source: str | Path, root: Path, allowed_root: str | None, storage_settings=None) -> DataRoot:
    """The DataRoot a dataset is read through (trainer.data.root): the folder of `root` (the local
    source, or its S3 mirror), checked to lie inside `allowed_root` (a folder, or an s3:// prefix whose
    mirror is the bound) when one is given. A local source is never read from the S3 mirror cache."""
    from trainer.contract.storage import mirror_path, parse_uri

    settings = storage_settings  # None: a run without S3 settings has no mirror cache to keep out
    is_s3 = not isinstance(parse_uri(str(source)), Path)
    within = None
    if allowed_root is not None:
        bound = parse_uri(allowed_root)
        if isinstance(bound, Path) == is_s3:
            raise DataError(
                f"data.source {source!r} and data.allowed_root {allowed_root!r}: one is an s3:// URI and "
                "the other a local path"
            )
        if is_s3 and settings is None:
            raise DataError(
                f"data.allowed_root {allowed_root!r}: an s3:// root needs the run's storage settings"
            )
        within = mirror_path(allowed_root, settings) if is_s3 else bound
    excluded = () if is_s3 or settings is None else (settings.cache_dir,)
    return DataRoot.of_source(root, within, excluded)


def open_dataset(
    source: str | Path,
    format: str = "auto",
    split: str = "train",
    *,
    skip_bad: bool = False,
    check_images: bool = True,
    storage_settings=None,
    progress: FetchProgress | None = None,
    allowed_root: str | None = None,
    classes: list[str] | str | None = None,
) -> DetectionSet:
    """Reads one split (or `a+b` splits) of a dataset into records, applying the bad-data policy.

    Every file is read through the dataset's DataRoot (`data_root`): the source, each split and every
    path the annotations name must resolve inside the source's folder, and the source inside
    `allowed_root` when given (`data.allowed_root`: the root the service admitted it under).
    `classes` (`data.classes`): the class names and order, a list or a names file
    (trainer.data.classes); None: the dataset's own.

    `check_images` opens every image's header (missing or unreadable images are errors, or skipped
    with `skip_bad`); fitting anchors on annotation-only data (VOC/COCO JSON without images) turns
    it off. Formats that carry no image sizes (YOLO, Brainwash) always read the headers.
    """
    root = local_root(source, storage_settings, progress)
    files = data_root(source, root, allowed_root, storage_settings)
    fmt = detect_format(root, files) if format == "auto" else format
    module = reader(fmt)
    names = resolve_classes(classes, root, files)
    parts = [split] if root.is_file() else [s.strip() for s in split.split("+") if s.strip()]
    if not parts:
        raise DataError(f"{root}: empty split name")
    sets = []
    for part in parts:
        policy = BadDataPolicy(skip_bad)
        sets.append(module.read(root, part, policy, check_images, files, classes=names))
    data = sets[0] if len(sets) == 1 else concat_sets(sets)
    if not data.records:
        raise DataError(f"{data.name}: no images")
    return data
