"""Which stride each fitted anchor's level has, and the constraint that keeps anchors above it.

A fit of L levels of A anchors fits L * A anchors jointly; sorted by area they are cut into L
groups of A, the smallest on the finest level (trainer.model.levels). `--min-stride-fraction F`
keeps every anchor at least F x its level's stride in w and in h: an anchor much smaller than its
level's grid cell is one that level cannot place well (YOLOv3's smallest, 10 x 13 px on stride 8,
is 1.25 x 1.6 cells).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from trainer.config import LEVEL_STRIDES  # the strides a fit may default to, finest first
from trainer.model.levels import anchor_strides, by_area

_MAX_ROUNDS = 50  # clamping can reorder anchors by area; a few rounds settle it


def default_strides(levels: int, stride: int = 32) -> list[int]:
    """One level: [stride]. Several: the L strides of 8, 16, 32, 64 ending at 32 (YOLOv3's three are
    [8, 16, 32], yolov3-tiny's two [16, 32]), and all four for L = 4."""
    if levels < 1:
        raise ValueError(f"--levels must be at least 1, got {levels}")
    if levels == 1:
        return [stride]
    if levels > len(LEVEL_STRIDES):
        raise ValueError(f"--levels {levels}: give --strides, the defaults are {list(LEVEL_STRIDES)}")
    end = max(levels, LEVEL_STRIDES.index(32) + 1)
    return list(LEVEL_STRIDES[end - levels : end])


def check_strides(strides: Sequence[int], levels: int | None) -> list[int]:
    """The strides as positive ascending distinct ints, as many as `levels` when that is given."""
    strides = [int(s) for s in strides]
    if not strides or any(s < 1 for s in strides):
        raise ValueError(f"--strides {strides}: each stride must be a positive number of pixels")
    if strides != sorted(set(strides)):
        raise ValueError(f"--strides {strides}: strides must be distinct and ascending, finest first")
    if levels is not None and len(strides) != levels:
        raise ValueError(f"--strides lists {len(strides)} strides but --levels is {levels}")
    return strides


def check_fraction(fraction: float | None) -> float | None:
    if fraction is not None and not (math.isfinite(fraction) and fraction > 0):
        raise ValueError(f"--min-stride-fraction must be a positive number, got {fraction}")
    return fraction


def stride_floor(wh: Tensor, strides: Sequence[int], fraction: float | None) -> Tensor:
    """[L * A, 2] anchors with each at least `fraction` x its level's stride in w and h, rows kept in
    place. A row's level is its rank by area; raising a side can change the ranks, so this repeats
    (sort, cut into levels, clamp) until the ranks stand still. No fraction: `wh` unchanged."""
    if fraction is None:
        return wh
    floors = torch.tensor(anchor_strides(len(wh), strides), dtype=wh.dtype) * fraction  # by rank
    out = wh.clone()
    for _ in range(_MAX_ROUNDS):
        order = by_area(out)
        out[order] = torch.maximum(out[order], floors[:, None])
        if torch.equal(by_area(out), order):
            break
    return out


def levels_of(wh: Tensor, num_levels: int) -> list[int]:
    """The level of each row of [L * A, 2] anchors: its rank by area, cut into L groups."""
    per = len(wh) // num_levels
    rank = torch.empty(len(wh), dtype=torch.long)
    rank[by_area(wh)] = torch.arange(len(wh))
    return (rank // per).tolist()
