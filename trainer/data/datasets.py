"""The training and validation datasets a config names, behind one protocol the engine relies on.

Protocol (SyntheticShapes and ImageDataset both follow it):
    ds[i]            -> (uint8 [3, S, S], float32 [k, 5] = class, x1, y1, x2, y2 px at the input):
                        evaluation view (letterbox only)
    ds[(i, seed)]    -> the same, augmented with random draws from `seed` (training view)
    len(ds), ds.class_names, ds.num_classes
    ds.boxes_wh()    -> [N, 2] training box shapes, pixels at the input size (anchor init, fit metrics)
    ds.ground_truth(i) -> {"boxes" [n, 4] original px, "labels", "iscrowd"?, "difficult"?, "size" (h, w)}
    ds.to_original(i, boxes [m, 4] at the input) -> [m, 4] original px
    ds.summary()     -> the dataset summary stored with every run
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace

from torch import Tensor

from trainer.config import TrainConfig
from trainer.contract.storage import StorageSettings
from trainer.data.records import DataError, DetectionSet

log = logging.getLogger(__name__)


@dataclass
class Datasets:
    train: object
    val: object
    true_shapes: Tensor | None  # the synthetic mixture's shapes; None for real data

    @property
    def class_names(self) -> list[str]:
        return self.train.class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> dict:
        return {"train": self.train.summary(), "val": self.val.summary()}


def hold_out(data: DetectionSet, fraction: float, seed: int) -> tuple[DetectionSet, DetectionSet]:
    """(train, val) of one set: `fraction` of its images, at least one, drawn by `seed` for val.

    The draw depends only on the images' paths and the seed, not on the order they were listed in,
    so adding images to a set leaves most of the earlier ones on their side."""
    n = len(data.records)
    if n < 2:
        raise DataError(f"{data.name}: data.val_fraction needs at least 2 images, the set has {n}")
    keys = [hashlib.sha256(f"{seed}:{_relative(r.image, data)}".encode()).digest() for r in data.records]
    order = sorted(range(n), key=keys.__getitem__)
    held = set(order[: min(n - 1, max(1, round(fraction * n)))])
    parts = []
    for side, keep in (("train", lambda i: i not in held), ("val", lambda i: i in held)):
        records = [r for i, r in enumerate(data.records) if keep(i)]
        share = f"{len(records)} of {n}"
        parts.append(replace(data, name=f"{data.name} [{side}: {share}, seed {seed}]", records=records))
    return parts[0], parts[1]


def _relative(image, data: DetectionSet) -> str:
    """The image's path inside its dataset folder: the same on every machine and in every cache."""
    if data.files is not None and image.is_relative_to(data.files.folder):
        return image.relative_to(data.files.folder).as_posix()
    return image.as_posix()


def build_datasets(
    cfg: TrainConfig, fetch_progress=None, *, storage: StorageSettings | None = None
) -> Datasets:
    """Renders the synthetic set, or reads the configured dataset's two splits (local or s3://).

    `fetch_progress(done, total)` follows the download of an s3:// source into the local cache;
    `storage`: the run's storage settings (S3 and the mirror cache), None for a run without S3."""
    size, data = cfg.model.image_size, cfg.data
    if data.is_synthetic:
        from trainer.data.synthetic import build_synthetic

        train, val = build_synthetic(data.synthetic, size, cfg.seed, hflip=data.augment.hflip)
        return Datasets(train, val, train.true_shapes())

    from trainer.data.images import ImageDataset
    from trainer.data.sources import open_dataset

    splits = {}
    roles = (
        (("train", data.train_split),)
        if data.val_fraction
        else (("train", data.train_split), ("val", data.val_split))
    )
    for role, split in roles:
        splits[role] = open_dataset(
            data.source,
            data.format,
            split,
            skip_bad=data.skip_bad,
            progress=fetch_progress,
            allowed_root=data.allowed_root,
            storage_settings=storage,
            classes=data.classes,
        )
        log.info("%s split %r: %d images", role, split, len(splits[role]))
    if data.val_fraction:
        splits["train"], splits["val"] = hold_out(splits["train"], data.val_fraction, data.split_seed)
    if splits["train"].name == splits["val"].name:  # a single annotation file: splits are ignored
        log.warning(
            "%s: training and validation read the same images, so AP measures fitting, not "
            "generalisation (give a folder with two splits to separate them)",
            data.source,
        )
    if splits["train"].class_names != splits["val"].class_names:
        raise DataError(
            f"{data.source}: the {data.train_split!r} and {data.val_split!r} splits name different classes"
        )
    train = ImageDataset(splits["train"], size, data.augment, cache=data.cache_images)
    val = ImageDataset(splits["val"], size, cache=data.cache_images)
    return Datasets(train, val, None)
