"""Which anchor of which cell answers for each ground-truth box, and with what weight.

A box j belongs to the grid cell holding its centre. Within that cell its weight over the A
anchors is `delta_j` ([A], sums to 1):
    hard (YOLOv2):           one-hot on the anchor with the best shape IoU;
    soft (eq. 10, warm-up):  softmax_k(-dist(a_k, g_j) / T), so every anchor gets some of every box
                             and none starves because of a bad init.
Everything is vectorised over all boxes of the batch; a batch (or image) with no boxes is fine.
The assignment is a decision, not a function to differentiate: it is computed from detached anchors.

With several levels (trainer.model.levels) the weights run over all L * A anchors of all levels at
once: hard, the one best-IoU anchor among all of them; soft, one softmax over all of them. Each
level then places the box in its own cell (the box centre over that level's stride) and takes its
A columns of the weights, so a box weighs on each anchor at that anchor's level and cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trainer.config import SoftAssignConfig
from trainer.model.boxes import shape_iou, xyxy_to_cxcywh


@dataclass
class Assignment:
    """M boxes of a batch, each tied to one cell and spread over that cell's A anchors."""

    batch: Tensor  # [M] long, image index in the batch
    cls: Tensor  # [M] long, class id
    gy: Tensor  # [M] long, cell row
    gx: Tensor  # [M] long, cell column
    offset_xy: Tensor  # [M, 2] box centre within its cell, in [0, 1)
    log_wh: Tensor  # [M, 2] log of the box's (w, h) in pixels: g-hat of eq. 3
    weights: Tensor  # [M, A] delta, each row sums to 1

    @property
    def num(self) -> int:
        return self.batch.shape[0]


def assignment_distance(boxes_wh: Tensor, anchors_wh: Tensor, dist: str) -> Tensor:
    """[M, 2] x [A, 2] pixels -> [M, A] distances (smaller is closer)."""
    if dist == "iou":
        return 1 - shape_iou(boxes_wh, anchors_wh)
    if dist == "log_l2":
        return (boxes_wh.log()[:, None, :] - anchors_wh.log()[None, :, :]).pow(2).sum(-1)
    raise ValueError(f"unknown assignment distance {dist!r}: expected 'iou' or 'log_l2'")


def hard_weights(boxes_wh: Tensor, anchors_wh: Tensor) -> Tensor:
    """[M, A] one-hot on the anchor with the best shape IoU (ties go to the lowest index)."""
    best = shape_iou(boxes_wh, anchors_wh).argmax(-1)
    return torch.nn.functional.one_hot(best, anchors_wh.shape[0]).to(boxes_wh.dtype)


def soft_weights(boxes_wh: Tensor, anchors_wh: Tensor, temperature: float, dist: str) -> Tensor:
    """[M, A] softmax(-dist / T) over anchors: eq. 10."""
    return torch.softmax(-assignment_distance(boxes_wh, anchors_wh, dist) / temperature, dim=-1)


def assign(
    targets: Tensor,
    log_anchors: Tensor,
    stride: int,
    grid_hw: tuple[int, int],
    soft: SoftAssignConfig | None = None,
) -> Assignment:
    """Assigns the batch's boxes to cells and anchors (one level).

    targets      [M, 6] (image index, class, x1, y1, x2, y2), pixels at the input size
    log_anchors  [A, 2] log (w, h) in pixels (detached here)
    soft         the soft-assignment settings while warming up, None for the hard assignment
    """
    return assign_levels(targets, log_anchors, [stride], [grid_hw], soft)[0]


def box_weights(targets: Tensor, log_anchors: Tensor, soft: SoftAssignConfig | None) -> Tensor:
    """[M, K] delta of the batch's boxes over all K anchors (of every level): eq. 10 or one-hot."""
    anchors_wh = log_anchors.detach().exp()
    boxes_wh = xyxy_to_cxcywh(targets[:, 2:6])[:, 2:].clamp(min=1e-3)
    if soft is not None:
        return soft_weights(boxes_wh, anchors_wh, soft.temperature, soft.dist)
    return hard_weights(boxes_wh, anchors_wh)


def assign_levels(
    targets: Tensor,
    log_anchors: Tensor,
    strides: list[int],
    grids_hw: list[tuple[int, int]],
    soft: SoftAssignConfig | None = None,
) -> list[Assignment]:
    """One Assignment per level: the weights over all [L * A, 2] anchors, each level's A columns
    placed in that level's cells (the module docstring)."""
    weights = box_weights(targets, log_anchors, soft)
    per = log_anchors.shape[0] // len(strides)
    return [
        _placed(targets, stride, grid, weights[:, level * per : (level + 1) * per])
        for level, (stride, grid) in enumerate(zip(strides, grids_hw, strict=True))
    ]


def _placed(targets: Tensor, stride: int, grid_hw: tuple[int, int], weights: Tensor) -> Assignment:
    h, w = grid_hw
    cxcywh = xyxy_to_cxcywh(targets[:, 2:6])
    boxes_wh = cxcywh[:, 2:].clamp(min=1e-3)
    cell = cxcywh[:, :2] / stride
    gx = cell[:, 0].floor().long().clamp(0, w - 1)
    gy = cell[:, 1].floor().long().clamp(0, h - 1)
    offset = (cell - torch.stack([gx, gy], dim=-1)).clamp(0, 1 - 1e-6)
    return Assignment(
        batch=targets[:, 0].long(),
        cls=targets[:, 1].long(),
        gy=gy,
        gx=gx,
        offset_xy=offset,
        log_wh=boxes_wh.log(),
        weights=weights,
    )
