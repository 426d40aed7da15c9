"""Opening a dataset by URI: local folder or file, or `s3://bucket/prefix`, in any known format.

    open_dataset("../shared/data/coco128", format="yolo", split="train")
    open_dataset("s3://datasets/voc/VOCdevkit/VOC2007", split="trainval")
    open_dataset("../shared/data/voc/pascal_train2007.json")          # a single annotation file
    open_dataset("VOCdevkit", format="voc", split="VOC2007/trainval+VOC2012/trainval")

Each format lives in its own module (`trainer.data.<format>`) with the same two functions:

    looks_like(root: Path) -> bool      does this folder or file have the format's layout?
    read(root, split, policy, check_images) -> DetectionSet

`split` names a part of the dataset the way its format does (COCO `train2017`, VOC `trainval`, a key
of a YOLO yaml, a Brainwash `.idl`); `a+b` concatenates splits. A source that is a single annotation
file is the whole set and `split` is ignored. S3 sources are mirrored into the local cache first
(trainer.storage, keyed by ETag: a second open downloads nothing).

Torch-free, like the readers.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from trainer.data.records import BadDataPolicy, DataError, DetectionSet, concat_sets

log = logging.getLogger(__name__)

FORMATS = ("coco", "yolo", "voc", "brainwash")


def reader(fmt: str) -> ModuleType:
    """The module that reads `fmt` (coco, yolo, voc, brainwash)."""
    if fmt not in FORMATS:
        raise DataError(f"unknown dataset format {fmt!r}: expected one of {', '.join(FORMATS)} or auto")
    return importlib.import_module(f"trainer.data.{fmt}")


def detect_format(root: Path) -> str:
    """The one format whose layout `root` has; an error naming the candidates when zero or several fit."""
    matches = [fmt for fmt in FORMATS if reader(fmt).looks_like(root)]
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
    """The local folder or file for `source`: a path, `file://` URI, or `s3://` URI (mirrored)."""
    text = str(source)
    if text.startswith("s3://"):
        from trainer.storage import StorageError, fetch_to_cache

        try:
            fetched = fetch_to_cache(text, storage_settings, progress)
        except StorageError as exc:  # a missing bucket or prefix is bad input like a missing folder
            raise DataError(f"dataset source: {exc}") from None
        log.info(
            "%s: %d objects downloaded, %d already cached in %s",
            text,
            fetched.downloaded,
            fetched.cached,
            fetched.local_path,
        )
        return fetched.local_path
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise DataError(f"dataset source {text!r}: only local paths, file:// and s3:// URIs are supported")
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"dataset source not found: {path}")
    return path


def open_dataset(
    source: str | Path,
    format: str = "auto",
    split: str = "train",
    *,
    skip_bad: bool = False,
    check_images: bool = True,
    storage_settings=None,
    progress: FetchProgress | None = None,
) -> DetectionSet:
    """Reads one split (or `a+b` splits) of a dataset into records, applying the bad-data policy.

    `check_images` opens every image's header (missing or unreadable images are errors, or skipped
    with `skip_bad`); fitting anchors on annotation-only data (VOC/COCO JSON without images) turns
    it off. Formats that carry no image sizes (YOLO, Brainwash) always read the headers.
    """
    root = local_root(source, storage_settings, progress)
    fmt = detect_format(root) if format == "auto" else format
    module = reader(fmt)
    parts = [split] if root.is_file() else [s.strip() for s in split.split("+") if s.strip()]
    if not parts:
        raise DataError(f"{root}: empty split name")
    sets = []
    for part in parts:
        policy = BadDataPolicy(skip_bad)
        sets.append(module.read(root, part, policy, check_images))
    data = sets[0] if len(sets) == 1 else concat_sets(sets)
    if not data.records:
        raise DataError(f"{data.name}: no images")
    return data
