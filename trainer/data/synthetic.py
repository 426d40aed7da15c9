"""A built-in detection dataset whose box shapes come from a known mixture, so learned anchors can be
checked against the truth.

Each image is a noisy colour-gradient background with 1..4 objects drawn on it. Class 0 is a
filled rectangle, class 1 a filled ellipse, class 2 a hollow frame; each class has its own hue.
An object's shape is drawn from `DataConfig.shapes` (a mixture of (w, h) components) with
log-normal jitter, so the "true anchors" are the components' shapes. Everything is deterministic
from (seed, image index); images are rendered once, in memory, as uint8.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from trainer.config_data import SyntheticConfig
from trainer.data.records import size_range

_HUES = np.array([[220, 60, 50], [60, 200, 70], [60, 90, 230]], dtype=np.float32)  # per class
_MAX_PLACEMENT_TRIES = 30
_MAX_OVERLAP_IOU = 0.1  # objects barely overlap, so every box is what it claims to be


def _iou_1_to_n(box: np.ndarray, others: list[np.ndarray]) -> float:
    if not others:
        return 0.0
    o = np.stack(others)
    lt = np.maximum(box[:2], o[:, :2])
    rb = np.minimum(box[2:], o[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    union = (box[2:] - box[:2]).prod() + (o[:, 2:] - o[:, :2]).prod(1) - inter
    return float((inter / union).max())


def _draw(canvas: np.ndarray, cls: int, box: np.ndarray, colour: np.ndarray) -> None:
    """Draws one object into `canvas` [S, S, 3] float, in place. `box` is xyxy pixels."""
    x1, y1, x2, y2 = box
    xs = np.arange(int(np.floor(x1)), int(np.ceil(x2)))
    ys = np.arange(int(np.floor(y1)), int(np.ceil(y2)))
    px, py = np.meshgrid(xs + 0.5, ys + 0.5)  # pixel centres
    if cls == 0:  # filled rectangle
        mask = np.ones_like(px, dtype=bool)
    elif cls == 1:  # filled ellipse touching the box on all four sides
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        mask = ((px - cx) / rx) ** 2 + ((py - cy) / ry) ** 2 <= 1.0
        mask[mask.shape[0] // 2, :] = True  # keep the full extent even for tiny ellipses
        mask[:, mask.shape[1] // 2] = True
    else:  # hollow frame, border a quarter of the shorter side (at least 1 px)
        t = max(1.0, 0.25 * min(x2 - x1, y2 - y1))
        mask = (px < x1 + t) | (px > x2 - t) | (py < y1 + t) | (py > y2 - t)
    region = canvas[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1]
    region[mask] = colour


def render_image(
    cfg: SyntheticConfig, image_size: int, seed: int, index: int
) -> tuple[np.ndarray, np.ndarray]:
    """One image and its labels. Returns (uint8 [S, S, 3], float32 [k, 5] = class, x1, y1, x2, y2)."""
    rng = np.random.default_rng([seed, index])
    s = image_size
    # Background: a random linear colour gradient plus pixel noise.
    c0, c1 = rng.uniform(40, 200, size=(2, 3))
    t = np.linspace(0, 1, s, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * t[None, :] + np.sin(angle) * t[:, None] + 1.5) / 3
    canvas = c0 + (c1 - c0) * ramp[..., None]
    canvas += rng.normal(0, 12, size=canvas.shape)

    weights = np.array([c.weight for c in cfg.shapes], dtype=np.float64)
    means = np.log(np.array([[c.w, c.h] for c in cfg.shapes], dtype=np.float64))
    n_obj = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    boxes: list[np.ndarray] = []
    labels: list[int] = []
    for _ in range(n_obj):
        comp = rng.choice(len(weights), p=weights / weights.sum())
        w, h = np.clip(np.exp(means[comp] + rng.normal(0, cfg.shape_jitter, size=2)), 2.0, s - 1.0)
        cls = int(rng.integers(cfg.num_classes))
        for _ in range(_MAX_PLACEMENT_TRIES):
            x1, y1 = rng.uniform(0, s - w), rng.uniform(0, s - h)
            box = np.array([x1, y1, x1 + w, y1 + h])
            if _iou_1_to_n(box, boxes) <= _MAX_OVERLAP_IOU:
                break
        else:
            continue  # no room for it: the image has one object fewer
        colour = np.clip(_HUES[cls] + rng.normal(0, 20, size=3), 0, 255)
        _draw(canvas, cls, box, colour)
        boxes.append(box)
        labels.append(cls)
    image = np.clip(canvas, 0, 255).astype(np.uint8)
    target = np.zeros((len(boxes), 5), dtype=np.float32)
    if boxes:
        target[:, 0] = labels
        target[:, 1:] = np.stack(boxes)
    return image, target


class SyntheticShapes(Dataset):
    """`num_images` rendered images at `image_size`. Item: (uint8 [3, S, S], float32 [k, 5]).

    Keys follow the trainer's dataset protocol: `i` is the image as rendered (evaluation), `(i, seed)`
    is it flipped horizontally with probability `hflip`, drawn from `seed` (training). The images
    are already at the input size, so the letterbox is the identity.
    """

    def __init__(self, cfg: SyntheticConfig, image_size: int, num_images: int, seed: int, hflip: float = 0.0):
        self.cfg, self.image_size, self.seed, self.hflip = cfg, image_size, seed, hflip
        rendered = [render_image(cfg, image_size, seed, i) for i in range(num_images)]
        self.images = torch.from_numpy(np.stack([im for im, _ in rendered])).permute(0, 3, 1, 2).contiguous()
        self.targets = [torch.from_numpy(t) for _, t in rendered]
        self.class_names = ["rectangle", "ellipse", "frame"][: cfg.num_classes]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        image, target = self.images[index], self.targets[index]
        if seed is not None and self.hflip and np.random.default_rng(seed).random() < self.hflip:
            image = image.flip(-1)
            target = target.clone()
            target[:, [1, 3]] = self.image_size - target[:, [3, 1]]
        return image, target

    def boxes_wh(self) -> Tensor:
        """[N, 2] shapes of every box in the set, pixels at the input size."""
        t = torch.cat(self.targets) if self.targets else torch.zeros(0, 5)
        return t[:, 3:5] - t[:, 1:3]

    def true_shapes(self) -> Tensor:
        """[K, 2] the mixture's shapes: what ideal anchors recover."""
        return torch.tensor([[c.w, c.h] for c in self.cfg.shapes], dtype=torch.float32)

    def ground_truth(self, index: int) -> dict:
        t = self.targets[index].numpy()
        return {"boxes": t[:, 1:5].astype(np.float64), "labels": t[:, 0].astype(np.int64),
                "size": (self.image_size, self.image_size)}  # fmt: skip

    def to_original(self, index: int, boxes: np.ndarray) -> np.ndarray:
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)

    def summary(self) -> dict:
        wh = self.boxes_wh().numpy()
        counts = np.bincount(torch.cat(self.targets)[:, 0].long().numpy(), minlength=self.num_classes)
        return {
            "name": f"synthetic (seed {self.seed})",
            "format": "synthetic",
            "images": len(self),
            "images_without_boxes": sum(int(len(t) == 0) for t in self.targets),
            "boxes": int(len(wh)),
            "crowd": 0,
            "difficult": 0,
            "classes": self.num_classes,
            "per_class": dict(zip(self.class_names, counts.tolist(), strict=True)),
            "box_size_px": size_range(wh),
            "bad_data": None,
        }


def build_synthetic(
    cfg: SyntheticConfig, image_size: int, seed: int, hflip: float = 0.0
) -> tuple[SyntheticShapes, SyntheticShapes]:
    """(train, val) sets; the validation set is rendered from a different seed stream."""
    train = SyntheticShapes(cfg, image_size, cfg.num_train, seed=seed, hflip=hflip)
    val = SyntheticShapes(cfg, image_size, cfg.num_val, seed=seed + 10_000)
    return train, val
