"""What every dataset reader yields, and the one bad-data policy they all apply.

A reader turns annotations in some format into a `DetectionSet`: one `ImageRecord` per image with
its boxes in pixels of the *original* image (xyxy, 0-based, continuous coordinates: a box covering
the whole W x H image is (0, 0, W, H)), contiguous class ids, and crowd / difficult flags. Readers
never resize or augment; that happens later, at the model's input size.

Bad data (`BadDataPolicy`), the same for every format:
- boxes with NaN/inf coordinates, zero or negative size, or lying entirely outside the image are
  dropped; boxes partly outside are clipped to the image. Both are counted, never silent.
- unreadable or missing images, unknown class ids and malformed lines are errors that name the file
  and the line (`DataError`); with `skip_bad` they are skipped (the line, or the whole image when the
  image itself is bad) and counted instead.

Torch-free: numpy and Pillow (image headers only) are enough to read and summarise a dataset.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trainer.data.errors import DataError  # also imported from here by every reader

if TYPE_CHECKING:
    from trainer.data.root import DataRoot

# Problems kept verbatim in a report (the counts are always complete).
MAX_LISTED_PROBLEMS = 20
# Coordinates this far outside the image are rounding, not a box to clip (VOC's 1-based edges).
CLIP_TOLERANCE_PX = 1e-3


# How a bad line's error says to skip such lines: the config's key (train, jobs); `anchor-opt fit`,
# whose flag is --skip-bad, says that instead (trainer.commands).
SKIP_HINT = "set data.skip_bad"


@dataclass
class ImageRecord:
    """One image and its boxes. Arrays have one row per box (possibly zero rows)."""

    image: Path  # the image file (for annotation-only sets, where it would be)
    width: int  # pixels of the original image
    height: int
    boxes: np.ndarray  # [n, 4] float32 xyxy, pixels in the original image
    classes: np.ndarray  # [n] int64 contiguous class ids 0..C-1
    crowd: np.ndarray  # [n] bool: COCO iscrowd, ignored in training and in evaluation
    difficult: np.ndarray  # [n] bool: VOC difficult, ignored in training and in evaluation

    @classmethod
    def build(
        cls,
        image: Path,
        width: int,
        height: int,
        boxes=None,
        classes=None,
        crowd=None,
        difficult=None,
    ) -> ImageRecord:
        """A record from lists or arrays; missing flags default to False."""
        b = np.asarray(boxes if boxes is not None else [], dtype=np.float32).reshape(-1, 4)
        n = len(b)

        def flags(v) -> np.ndarray:
            return np.zeros(n, dtype=bool) if v is None else np.asarray(v, dtype=bool).reshape(n)

        c = np.asarray(classes if classes is not None else [], dtype=np.int64).reshape(n)
        return cls(Path(image), int(width), int(height), b, c, flags(crowd), flags(difficult))

    @property
    def trainable(self) -> np.ndarray:
        """[n] bool: boxes a detector is trained on (neither crowd nor difficult)."""
        return ~(self.crowd | self.difficult)


@dataclass
class DataReport:
    """What the bad-data policy did while reading. Every field is a count."""

    clipped: int = 0  # boxes partly outside the image, clipped to it
    dropped_invalid: int = 0  # boxes with NaN or infinite coordinates
    dropped_empty: int = 0  # boxes with zero or negative width or height
    dropped_outside: int = 0  # boxes entirely outside the image
    skipped_lines: int = 0  # malformed lines / annotations or unknown classes, skipped with skip_bad
    skipped_images: int = 0  # missing or unreadable images, skipped with skip_bad
    problems: list[str] = field(default_factory=list)  # the first few messages, verbatim

    def note(self, message: str) -> None:
        if len(self.problems) < MAX_LISTED_PROBLEMS:
            self.problems.append(message)

    def merge(self, other: DataReport) -> DataReport:
        out = DataReport()
        for name in ("clipped", "dropped_invalid", "dropped_empty", "dropped_outside"):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        out.skipped_lines = self.skipped_lines + other.skipped_lines
        out.skipped_images = self.skipped_images + other.skipped_images
        out.problems = (self.problems + other.problems)[:MAX_LISTED_PROBLEMS]
        return out

    def as_dict(self) -> dict:
        return {
            "clipped": self.clipped,
            "dropped_invalid": self.dropped_invalid,
            "dropped_empty": self.dropped_empty,
            "dropped_outside": self.dropped_outside,
            "skipped_lines": self.skipped_lines,
            "skipped_images": self.skipped_images,
            "problems": list(self.problems),
        }


class BadDataPolicy:
    """Applies the bad-data rules while a reader runs, and counts what it did in `report`."""

    def __init__(self, skip_bad: bool = False):
        self.skip_bad = skip_bad
        self.report = DataReport()

    def bad_line(self, where: str, message: str) -> None:
        """A malformed line or annotation, or an unknown class id: raise, or count and go on.

        `where` is `file:line` (or `file: annotation 12` where a format has no lines). The caller
        skips the line when this returns.
        """
        text = f"{where}: {message}"
        if not self.skip_bad:
            raise DataError(f"{text} ({SKIP_HINT} to skip such lines and count them)")
        self.report.skipped_lines += 1
        self.report.note(text)

    def bad_image(self, where: str, message: str) -> None:
        """A missing or unreadable image: raise, or count it; the caller skips the whole image."""
        text = f"{where}: {message}"
        if not self.skip_bad:
            raise DataError(f"{text} ({SKIP_HINT} to skip such images and count them)")
        self.report.skipped_images += 1
        self.report.note(text)

    def clean_boxes(self, boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Clips boxes [n, 4] xyxy to the image and drops the unusable ones, counting both.

        Returns (kept boxes [m, 4] float32, keep mask [n] bool) so callers can filter the rows of
        their other per-box arrays with the same mask.
        """
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        finite = np.isfinite(b).all(1)
        self.report.dropped_invalid += int((~finite).sum())
        b = np.where(finite[:, None], b, 0.0)
        positive = finite & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        self.report.dropped_empty += int((finite & ~positive).sum())

        limits = np.array([width, height, width, height], dtype=np.float64)
        clipped = np.clip(b, 0.0, limits)
        inside = positive & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        self.report.dropped_outside += int((positive & ~inside).sum())
        moved = (np.abs(clipped - b) > CLIP_TOLERANCE_PX).any(1) & inside
        self.report.clipped += int(moved.sum())
        return clipped[inside].astype(np.float32), inside


def size_range(wh: np.ndarray) -> dict | None:
    """Min, median and max of box widths and heights [N, 2] (None without boxes), for summaries."""
    if len(wh) == 0:
        return None
    out = {}
    for name, col in (("w", wh[:, 0]), ("h", wh[:, 1])):
        out |= {f"min_{name}": float(col.min()), f"median_{name}": float(np.median(col))}
        out[f"max_{name}"] = float(col.max())
    return {k: round(v, 2) for k, v in out.items()}


@dataclass
class DetectionSet:
    """A dataset split as records, with its class names and what the bad-data policy did."""

    name: str  # for people: "coco128/train2017 (yolo)"
    format: str  # coco | yolo | voc | brainwash
    records: list[ImageRecord]
    class_names: list[str]
    report: DataReport = field(default_factory=DataReport)
    # The folder every image is opened through (trainer.data.root): set by the readers. None only
    # for sets built in code, whose paths are opened as given.
    files: DataRoot | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.records)

    def boxes_wh(self, image_size: int | None = None, trainable_only: bool = True) -> np.ndarray:
        """[N, 2] float32 box shapes. With `image_size`, in pixels at the model's input after the
        letterbox resize (each image scaled by image_size / max(w, h)); otherwise original pixels.
        Crowd and difficult boxes are left out unless `trainable_only` is False."""
        parts = []
        for r in self.records:
            keep = r.trainable if trainable_only else np.ones(len(r.boxes), dtype=bool)
            wh = r.boxes[keep, 2:4] - r.boxes[keep, 0:2]
            if image_size is not None:
                wh = wh * (image_size / max(r.width, r.height))
            parts.append(wh)
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 2), np.float32)

    def summary(self) -> dict:
        """Images, boxes, per-class counts, ignored boxes, box size range and bad-data counts."""
        per_class: Counter[int] = Counter()
        crowd = difficult = empty_images = 0
        for r in self.records:
            per_class.update(r.classes.tolist())
            crowd += int(r.crowd.sum())
            difficult += int(r.difficult.sum())
            empty_images += int(len(r.boxes) == 0)
        return {
            "name": self.name,
            "format": self.format,
            "images": len(self.records),
            "images_without_boxes": empty_images,
            "boxes": int(sum(per_class.values())),
            "crowd": crowd,
            "difficult": difficult,
            "classes": self.num_classes,
            "per_class": {self.class_names[c]: per_class.get(c, 0) for c in range(self.num_classes)},
            "box_size_px": size_range(self.boxes_wh(None, trainable_only=False)),  # original pixels
            "bad_data": self.report.as_dict(),
        }


def concat_sets(sets: list[DetectionSet]) -> DetectionSet:
    """One set from several splits of the same format and classes (e.g. VOC 2007+2012 trainval)."""
    first = sets[0]
    for s in sets[1:]:
        if s.class_names != first.class_names:
            raise DataError(f"{s.name}: its classes differ from {first.name}'s, so they cannot be combined")
    report = DataReport()
    for s in sets:
        report = report.merge(s.report)
    return DetectionSet(
        " + ".join(s.name for s in sets),
        first.format,
        [r for s in sets for r in s.records],
        list(first.class_names),
        report,
        first.files,
    )
