"""The learned fit's IoU phase: raise the mean best IoU itself, never at the cost of BPR.

The log-space objective (trainer.fit.learned) is the paper's clustering term: it makes each anchor
the geometric mean of its boxes, which is not the shape that maximises their IoU. This phase starts
from the log-space warm-up's anchors and runs Adam in log space, s = (log w, log h), on

    F(s) = mean over boxes j of max over anchors i of IoU(a_i, g_j)

on the fixed set of fitted boxes, with the gradient in closed form: the max picks each box's best
anchor, and for a box with IoU v, box area G and anchor area P, dv / d log w = v (1 + v) ([w < box
w] - P / (G + P)), the same for h.

The BPR guard (BPR: the share of boxes with an anchor within 4x in w and h, YOLOv5's rule): a step
that would leave BPR under the start's is clamped, per anchor and coordinate, to the interval that
keeps every box its current anchors match matched (`keep_bounds`); so BPR never falls below the
start's. The anchors returned are the best seen (the start included): F never goes down either.
Deterministic: nothing random.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from trainer.fit.shapes import Shapes

# Measured on VOC07 at 416 px (bench/fit_speed.py --sweep): lr 0.02 with patience 20 ends at the
# same mean IoU as lr 0.05 with patience 10 (0.6075 with 5 anchors, 0.6745 with 9) in 2-3x the
# steps; lr 0.1 ends 0.0003 lower with 5 anchors.
DEFAULT_REFINE_STEPS = 200
DEFAULT_REFINE_LR = 0.05
DEFAULT_PATIENCE = 10  # stop after this many steps without a new best
_TOL = 1e-7  # a new best must beat the old one by this much mean IoU
_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-12
_MIN_LR_FRACTION = 1 / 64  # stop once refused steps have halved the step size this far
# Bounds sit this far (in log ratio, 0.001 %) inside the 4x limit, and an unclamped step must keep
# its boxes this far inside: a box at 4x minus 1e-9 could read as exactly 4x once the anchors are
# rounded to float32, and the metrics count that as unmatched.
_INSIDE = 1e-5
_FAR = 1e6  # a log ratio no box is ever at (box sizes stay far below e^1e6)


@dataclass(frozen=True)
class Refined:
    anchors: Tensor  # [A, 2] float64 px, the best seen
    path: list[Tensor]  # [A, 2] px after each step taken, up to the best one
    steps: int  # steps tried, refused ones included
    refused: int  # steps `project` undid the guard's clamp on, not taken
    settled: bool  # stopped for want of progress, not at the step cap
    iou_before: float
    iou_after: float
    bpr_before: float
    bpr_after: float


def iou_gradient(shapes: Shapes, anchors: Tensor) -> tuple[float, Tensor]:
    """(F, dF / d log anchors [A, 2], float64) at `anchors` [A, 2] px, F the mean best shape IoU;
    computed in the dtype of `shapes`. A box whose best IoU two anchors share counts for both, and
    one exactly as wide as its anchor counts [w < box w] as 1/2 (the subgradient autograd takes).

    Only float arithmetic on the [A, N] matrices: on a [5, 30638] float32 one, a comparison took 5x
    an add's time, a multiply by a bool mask 7x, torch.where 35x; so indicators are written with sign().
    """
    a = anchors.to(shapes.w.dtype)
    iou = shapes.iou(a)  # [A, N]
    value = iou.amax(0)
    weight = (iou - value).sign_().add_(1) * (value * (1 + value))  # v (1 + v) on each box's best anchor
    pa = a.prod(1)[:, None]
    share = (weight * (pa / (shapes.area + pa))).sum(1)
    total = weight.sum(1)
    below = [(weight * (g - a[:, k : k + 1]).sign_()).sum(1) for k, g in enumerate((shapes.w, shapes.h))]
    grad = torch.stack([(below[k] + total) / 2 - share for k in range(2)], 1)  # [w < box w] = (sign + 1) / 2
    return float(value.mean(dtype=torch.float64)), grad.double() / len(shapes)


def keep_bounds(shapes: Shapes, log_a: Tensor, offsets: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """([A, 2] lowest, [A, 2] highest log w, log h) the anchors `log_a` may move to without losing a box.

    Every box they match (within `threshold` x in w and h) is tied to its nearest anchor in max log
    ratio (`offsets`: Shapes.offsets of them; every nearest one on a tie), which must stay within
    `threshold` x of it: an interval per anchor and coordinate holding the current value, so
    clamping to it keeps every box matched.
    """
    nearest = offsets.amin(0)
    matched = (math.log(threshold) - nearest).sign_().clamp_(min=0)  # [N] 1 if matched
    untied = 1 - (1 - (offsets - nearest).sign_()) * matched  # [A, N] 0 where tied, else 1
    limit = math.log(threshold) - _INSIDE
    far = untied * _FAR  # pushes boxes not tied to an anchor out of its min and max
    high = torch.stack([(g + limit + far).amin(1) for g in (shapes.log_w, shapes.log_h)], 1)
    low = torch.stack([(g - limit - far).amax(1) for g in (shapes.log_w, shapes.log_h)], 1)
    return torch.minimum(low.to(log_a), log_a), torch.maximum(high.to(log_a), log_a)


def refine_iou(
    shapes: Shapes,
    start: Tensor,
    steps: int = DEFAULT_REFINE_STEPS,
    lr: float = DEFAULT_REFINE_LR,
    project: Callable[[Tensor], Tensor] | None = None,
    threshold: float = 4.0,
    patience: int = DEFAULT_PATIENCE,
) -> Refined:
    """Adam on the mean best IoU from `start` [A, 2] px.

    A step is taken as it is when BPR stays at least the start's, else clamped to `keep_bounds`.
    `project` (px -> px, the stride constraint) runs after every step; should it undo the clamp and
    lose a box, the step is refused, the moments reset and the step size halved.
    """
    start = start.to(torch.float64)
    limit = math.log(threshold)
    offsets = shapes.offsets(start)
    bpr0 = _share(offsets.amin(0) < limit)
    iou, grad = iou_gradient(shapes, start)
    s, iou0, best_iou, best_at, path = start.log(), iou, iou, 0, []
    m, v = torch.zeros_like(s), torch.zeros_like(s)
    tried = refused = since_best = t = 0
    step_size = lr
    while tried < steps and since_best < patience and step_size >= lr * _MIN_LR_FRACTION:
        tried += 1
        t += 1
        m = _BETAS[0] * m + (1 - _BETAS[0]) * grad
        v = _BETAS[1] * v + (1 - _BETAS[1]) * grad**2
        m_hat, v_hat = m / (1 - _BETAS[0] ** t), v / (1 - _BETAS[1] ** t)
        candidate = s + step_size * m_hat / (v_hat.sqrt() + _ADAM_EPS)  # ascent
        wh = _projected(candidate.exp(), project)
        offsets_c = shapes.offsets(wh)
        if _share(offsets_c.amin(0) < limit - _INSIDE) < bpr0:  # would lose boxes: clamp
            low, high = keep_bounds(shapes, s, offsets, threshold)
            wh = _projected(torch.clamp(candidate, low, high).exp(), project)
            offsets_c = shapes.offsets(wh)
            if _share(offsets_c.amin(0) < limit) < bpr0:  # `project` undid the clamp: refuse
                refused += 1
                m, v, t = torch.zeros_like(s), torch.zeros_like(s), 0
                step_size /= 2
                since_best += 1
                continue
        s, offsets = wh.log(), offsets_c
        path.append(wh)
        iou, grad = iou_gradient(shapes, wh)
        if iou > best_iou + _TOL:
            best_iou, best_at, since_best = iou, len(path), 0
        else:
            since_best += 1
    path = path[:best_at]
    anchors = path[-1] if path else start
    settled = tried < steps
    bpr = shapes.bpr(anchors, threshold)
    return Refined(anchors, path, tried, refused, settled, iou0, best_iou, bpr0, bpr)


def _share(mask: Tensor) -> float:
    return float(mask.double().mean())


def _projected(wh: Tensor, project: Callable[[Tensor], Tensor] | None) -> Tensor:
    return wh if project is None else project(wh)
