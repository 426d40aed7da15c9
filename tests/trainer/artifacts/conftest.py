"""Fixtures the artifact tests share."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.data.records import concat_sets
from trainer.data.sources import open_dataset


@pytest.fixture
def voc07_boxes(shared_data: Path) -> torch.Tensor:
    """[N, 2] (w, h) of every VOC07 box (train + val + test) at a 416 px letterboxed input."""
    root = shared_data / "voc"
    if not (root / "pascal_train2007.json").is_file():
        pytest.skip(f"VOC07 (COCO-format json) not found under {root}")
    splits = ("train", "val", "test")
    sets = [open_dataset(root / f"pascal_{s}2007.json", "coco", check_images=False) for s in splits]
    return torch.from_numpy(concat_sets(sets).boxes_wh(416))
