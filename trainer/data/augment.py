"""Image and box transforms to the model's square input, built on albumentations.

Every image first goes through the letterbox (scale the longer side to S, pad the shorter one
evenly with grey), which is deterministic, so a prediction maps back to the original image exactly
(`Letterbox.to_original`) and the result can be cached. Evaluation stops there. Training then
applies the jitter: random zoom and shift, horizontal flip and colour, with the boxes moved by the
same transforms; boxes pushed mostly out of view or under `min_size` pixels are dropped.

Every random draw comes from the seed passed with each sample, so an epoch's augmentation is a
function of (run seed, epoch, position) and a resumed run sees exactly the images it would have.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations checks PyPI at import otherwise
import albumentations as A  # noqa: E402
import cv2  # noqa: E402

from trainer.config_data import AugmentConfig  # noqa: E402

PAD_VALUE = 114  # the grey YOLO pads with


@dataclass(frozen=True)
class Letterbox:
    """The letterbox geometry of one image: original (w, h) -> resized (nw, nh) placed at (left, top)."""

    width: int
    height: int
    size: int

    @property
    def resized(self) -> tuple[int, int]:
        # Same rounding as albumentations' LongestMaxSize (checked in tests).
        scale = self.size / max(self.width, self.height)
        return max(1, round(self.width * scale)), max(1, round(self.height * scale))

    @property
    def offset(self) -> tuple[int, int]:
        # Same split as albumentations' PadIfNeeded(position="center"): the extra pixel goes last.
        nw, nh = self.resized
        return (self.size - nw) // 2, (self.size - nh) // 2

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """[m, 4] xyxy original pixels -> pixels at the model input."""
        (nw, nh), (left, top) = self.resized, self.offset
        scale = np.array([nw / self.width, nh / self.height] * 2)
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale + [left, top, left, top]

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """[m, 4] xyxy pixels at the model input -> original image pixels, clipped to the image."""
        (nw, nh), (left, top) = self.resized, self.offset
        scale = np.array([nw / self.width, nh / self.height] * 2)
        out = (np.asarray(boxes, dtype=np.float64).reshape(-1, 4) - [left, top, left, top]) / scale
        return np.clip(out, 0, [self.width, self.height, self.width, self.height])


def _bbox_params(min_visibility: float = 0.0, min_size: float = 0.0) -> A.BboxParams:
    return A.BboxParams(
        format="pascal_voc",  # xyxy pixels
        label_fields=["classes"],
        min_visibility=min_visibility,
        min_width=min_size,
        min_height=min_size,
        clip=True,
    )


def letterbox_transform(size: int) -> A.Compose:
    """Any image to S x S: deterministic."""
    steps = [
        A.LongestMaxSize(max_size=size, interpolation=cv2.INTER_LINEAR),
        A.PadIfNeeded(size, size, position="center", border_mode=cv2.BORDER_CONSTANT, fill=PAD_VALUE),
    ]
    return A.Compose(steps, bbox_params=_bbox_params(), seed=0)


def jitter_transform(cfg: AugmentConfig) -> A.Compose | None:
    """Zoom/shift, flip and colour jitter of a letterboxed image, from the config's ranges (None if
    every range is zero)."""
    steps: list = []
    if cfg.scale or cfg.translate:
        steps.append(
            A.Affine(
                scale=(1 - cfg.scale, 1 + cfg.scale),
                translate_percent=(-cfg.translate, cfg.translate),
                border_mode=cv2.BORDER_CONSTANT,
                fill=PAD_VALUE,
                p=1.0,
            )
        )
    if cfg.hflip:
        steps.append(A.HorizontalFlip(p=cfg.hflip))
    if cfg.colour:
        c = cfg.colour
        steps.append(
            A.ColorJitter(
                brightness=(1 - c, 1 + c),
                contrast=(1 - c, 1 + c),
                saturation=(1 - c, 1 + c),
                hue=(-c / 20, c / 20),
                p=1.0,
            )  # fmt: skip
        )
    if not steps:
        return None
    return A.Compose(steps, bbox_params=_bbox_params(cfg.min_visibility, cfg.min_size), seed=0)


def apply(
    transform: A.Compose, image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs `transform` on an RGB uint8 image [H, W, 3] with boxes [n, 4] xyxy px and classes [n].

    With `seed`, the transform's random state is set first (training); returns the transformed
    (image [S, S, 3], boxes [m, 4] float32, classes [m] int64), m <= n.
    """
    if seed is not None:
        transform.set_random_seed(seed)
    out = transform(image=image, bboxes=np.asarray(boxes, np.float32).reshape(-1, 4), classes=classes)
    out_boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
    return out["image"], out_boxes, np.asarray(out["classes"], dtype=np.int64).reshape(-1)
