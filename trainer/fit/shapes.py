"""Box shapes laid out for the fit's inner loops: columns [N] and anchor-by-box matrices [A, N].

Every matrix here is [A, N] (anchors down, boxes across) rather than [N, A]: with A ~ 5 and N ~ 30,000
a reduction over a dimension of 5 that lies along memory (softmax, max over anchors of [N, A]) is
several times slower in torch on the CPU than the same reduction over rows. On VOC07's 30,638
boxes with 5 anchors, float64, one thread: shape IoU 0.20 ms here vs 2.05 ms as trainer.model.boxes
computes it ([N, A]), the softmax over anchors 0.23 ms vs 2.47 ms; the values are the same up to
rounding. A reduction that returns indices (max(0), min(0)) is much slower than one that does not
(amax, amin), so the IoU phase marks each box's best anchor with sign(iou - its column max) + 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# The same eps as trainer.model.boxes.shape_iou, so both give the same IoU.
_EPS = 1e-9


@dataclass(frozen=True)
class Shapes:
    """N box shapes (w, h) px as contiguous columns and their logs, in one dtype (float64 unless
    asked): anchors given to the methods are cast to it."""

    wh: Tensor  # [N, 2]
    w: Tensor  # [N]
    h: Tensor  # [N]
    area: Tensor  # [N]
    log_wh: Tensor  # [N, 2]
    log_w: Tensor  # [N]
    log_h: Tensor  # [N]
    area_eps: Tensor  # [N] area + eps, the union's constant part

    @classmethod
    def of(cls, boxes_wh, dtype: torch.dtype = torch.float64) -> Shapes:
        wh = torch.as_tensor(boxes_wh).to(torch.float64).reshape(-1, 2)
        log_wh = wh.log().to(dtype)
        wh = wh.to(dtype).contiguous()
        w, h = wh[:, 0].contiguous(), wh[:, 1].contiguous()
        area = w * h
        return cls(wh, w, h, area, log_wh, log_wh[:, 0].contiguous(), log_wh[:, 1].contiguous(), area + _EPS)

    def __len__(self) -> int:
        return len(self.w)

    def iou(self, anchors_wh: Tensor) -> Tensor:
        """[A, N] shape IoU of every anchor with every box."""
        a = anchors_wh.to(self.w.dtype)
        inter = torch.minimum(a[:, 0:1], self.w) * torch.minimum(a[:, 1:2], self.h)
        return inter / ((self.area_eps + a.prod(1)[:, None]) - inter)

    def best(self, anchors_wh: Tensor) -> tuple[Tensor, Tensor]:
        """([N] each box's best shape IoU, [N] the index of that anchor, the lowest on a tie).

        The indices cost: on a [5, 30638] float32 matrix max(0) took 0.56 ms, amax(0) 0.015 ms."""
        best = self.iou(anchors_wh).max(0)
        return best.values, best.indices

    def mean_best_iou(self, anchors_wh: Tensor) -> float:
        return float(self.iou(anchors_wh).amax(0).mean(dtype=torch.float64))

    def offsets(self, anchors_wh: Tensor) -> Tensor:
        """[A, N] max over w, h of |log(box / anchor)|: a box is matched by an anchor (YOLOv5's rule)
        when this is under log(4)."""
        log_a = anchors_wh.to(self.w.dtype).log()
        return torch.maximum((log_a[:, 0:1] - self.log_w).abs(), (log_a[:, 1:2] - self.log_h).abs())

    def matched(self, anchors_wh: Tensor, threshold: float = 4.0) -> Tensor:
        """[N] bool: some anchor within `threshold` x in both w and h (BPR is its mean)."""
        return self.offsets(anchors_wh).amin(0) < math.log(threshold)

    def bpr(self, anchors_wh: Tensor, threshold: float = 4.0) -> float:
        return float(self.matched(anchors_wh, threshold).mean(dtype=torch.float64))

    def soft_weights(self, anchors_wh: Tensor, temperature: float, dist: str) -> Tensor:
        """[A, N] softmax over anchors of -dist / T (eq. 10), as trainer.model.assign.soft_weights."""
        if dist == "iou":
            distance = 1 - self.iou(anchors_wh)
        elif dist == "log_l2":
            log_a = anchors_wh.to(self.w.dtype).log()
            distance = (log_a[:, 0:1] - self.log_w) ** 2 + (log_a[:, 1:2] - self.log_h) ** 2
        else:
            raise ValueError(f"unknown assignment distance {dist!r}: expected 'iou' or 'log_l2'")
        return torch.softmax(-distance / temperature, dim=0)
