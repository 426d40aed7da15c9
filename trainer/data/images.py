"""A torch Dataset over a `DetectionSet` of real images: decode, letterbox, jitter, to tensors.

Keys follow the trainer's dataset protocol (trainer.data.datasets): an `int` gives the image
letterboxed only (evaluation); an `(int, seed)` pair gives it jittered with that seed as well
(training). Items are (uint8 [3, S, S], float32 [k, 5] = class, x1, y1, x2, y2 pixels at the
input). Crowd and difficult boxes are not training targets; evaluation reads them from
`ground_truth`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from trainer.config_data import AugmentConfig
from trainer.data.augment import Letterbox, apply, jitter_transform, letterbox_transform
from trainer.data.records import DataError, DetectionSet, ImageRecord
from trainer.data.root import DataRoot


def decode_rgb(path, files: DataRoot | None = None) -> np.ndarray:
    """The image as RGB uint8 [H, W, 3], read through `files` (the dataset's folder: an image that
    resolves outside it is refused when it is opened, here, at training time). DataError naming the
    file when it cannot be read or decoded."""
    import cv2

    try:
        data = files.read_bytes(path) if files is not None else Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read this image ({exc.__class__.__name__})") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise DataError(f"{path}: cannot decode this image (missing, truncated or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# The image cache may take at most this share of the memory available when it is built: the rest of
# the run (model, optimizer, batches, loader workers) needs the rest. The service cannot count a real
# dataset's images at submit (service.capacity leaves the cache out), so this is checked here.
CACHE_MEMORY_SHARE = 0.5


def available_memory() -> int | None:
    """Bytes of memory available to new allocations now (Linux MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def check_cache_fits(images: int, image_size: int) -> None:
    """DataError naming data.cache_images when `images` letterboxed images would not fit in memory."""
    need, free = images * image_size * image_size * 3, available_memory()
    if free is not None and need > CACHE_MEMORY_SHARE * free:
        gib = 1 << 30
        raise DataError(
            f"data.cache_images: {images} images at {image_size} px take {need / gib:.1f} GiB, more than "
            f"{CACHE_MEMORY_SHARE:.0%} of the {free / gib:.1f} GiB of memory available; set "
            "data.cache_images=false (images are then decoded as they are read)"
        )


class ImageDataset(Dataset):
    """`data` at a square input of `image_size`, jittered for training when `augment` is given.

    With `cache`, every image is decoded and letterboxed once, here, and kept in memory; DataLoader
    workers forked later share those pages instead of decoding again each epoch.
    """

    def __init__(
        self, data: DetectionSet, image_size: int, augment: AugmentConfig | None = None, cache: bool = False
    ):
        self.data = data
        self.image_size = image_size
        self.class_names = list(data.class_names)
        self._letterbox = letterbox_transform(image_size)
        self._jitter = jitter_transform(augment) if augment is not None else None
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        if cache:
            check_cache_fits(len(self), image_size)
            self._cache = {i: self.letterboxed(i) for i in range(len(self))}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.data.records)

    def letterboxed(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(uint8 [S, S, 3], training boxes [k, 4] px at the input, classes [k]) of image `index`."""
        if self._cache is not None:
            return self._cache[index]
        record = self.data.records[index]
        image = decode_rgb(record.image, self.data.files)
        if image.shape[:2] != (record.height, record.width):
            raise DataError(
                f"{record.image}: image is {image.shape[1]}x{image.shape[0]} but its annotation says "
                f"{record.width}x{record.height}"
            )
        keep = record.trainable
        return apply(self._letterbox, image, record.boxes[keep], record.classes[keep])

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        image, boxes, classes = self.letterboxed(index)
        if seed is not None and self._jitter is not None:
            image, boxes, classes = apply(self._jitter, image, boxes, classes, seed)
        target = np.concatenate([classes[:, None].astype(np.float32), boxes], axis=1)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), torch.from_numpy(target)

    # --- what evaluation and anchor fitting read ---------------------------------------------------

    def boxes_wh(self) -> Tensor:
        """[N, 2] training box shapes in pixels at the input size (letterbox scale)."""
        return torch.from_numpy(self.data.boxes_wh(self.image_size))

    def ground_truth(self, index: int) -> dict:
        """The original image's boxes with their ignore flags, and its (height, width)."""
        r: ImageRecord = self.data.records[index]
        return {
            "boxes": r.boxes.astype(np.float64),
            "labels": r.classes,
            "iscrowd": r.crowd,
            "difficult": r.difficult,
            "size": (r.height, r.width),
        }

    def to_original(self, index: int, boxes: np.ndarray) -> np.ndarray:
        """[m, 4] xyxy at the input -> the original image's pixels."""
        r = self.data.records[index]
        return Letterbox(r.width, r.height, self.image_size).to_original(boxes)

    def summary(self) -> dict:
        return self.data.summary()
