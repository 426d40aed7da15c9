"""Anchors on several feature levels: one [L * A, 2] set, level l holding rows l*A .. (l+1)*A - 1.

A detector with `model.levels` (strides, ascending, e.g. [8, 16, 32]) predicts at each level with A
anchors. The anchors are one parameter over all levels; which rows belong to which level is fixed by
position, so the finest level (smallest stride) holds the first A rows. Every init sorts its L * A
anchors by area before they are split, so the smallest shapes start on the finest level, as YOLOv3's
anchors do (P3/8 gets the three smallest of nine). A one-level detector is the case L = 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from trainer.config import TrainConfig


def by_area(wh: Tensor) -> Tensor:
    """The permutation that sorts [K, 2] shapes by area (stable: equal areas keep their order)."""
    return torch.as_tensor(wh).prod(-1).argsort(stable=True)


def split_by_area(wh: Tensor, num_levels: int) -> list[Tensor]:
    """[L * A, 2] shapes sorted by area and cut into L groups of A, finest level first."""
    wh = torch.as_tensor(wh)
    if num_levels < 1 or len(wh) % num_levels:
        raise ValueError(f"{len(wh)} anchors do not split into {num_levels} levels of equal size")
    return list(wh[by_area(wh)].chunk(num_levels)) if len(wh) else []


def level_anchors(cfg: TrainConfig, boxes_wh: Tensor | None) -> Tensor:
    """[L * A, 2] px: the configured init of all the model's anchors (anchors.num on each level).

    One level: exactly trainer.model.anchors.initial_anchors. Several: the init run for L * A
    anchors, then sorted by area, so level l holds the l-th smallest A (a listed init too).
    """
    from trainer.model.anchors import initial_anchors

    if cfg.model.levels is None:
        return initial_anchors(cfg.anchors, boxes_wh)
    every = initial_anchors(cfg.anchors.model_copy(update={"num": cfg.total_anchors}), boxes_wh)
    return every[by_area(every)]


def anchor_levels(total: int, num_levels: int) -> list[int]:
    """The level index of each of `total` anchors held level after level: [0]*A + [1]*A + ..."""
    if num_levels < 1 or total % num_levels:
        raise ValueError(f"{total} anchors do not split into {num_levels} levels of equal size")
    per = total // num_levels
    return [k // per for k in range(total)]


def anchor_strides(total: int, strides: Sequence[int]) -> list[int]:
    """The stride of each anchor's level."""
    return [strides[level] for level in anchor_levels(total, len(strides))]
