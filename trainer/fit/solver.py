"""Anchors without training: fit A anchor shapes to a dataset's box shapes alone.

Two methods, both on box shapes `(w, h)` in pixels at the model's input size:

    kmeans   YOLOv2's k-means with distance 1 - shape IoU (trainer.model.anchors.kmeans_init).
    learned  the paper's log-space objective (Zhong et al., WACV 2020) with the anchors as the only
             parameters, s_i = (log w_i, log h_i):
                 L(s) = sum_ij delta_ij ||s_i - log g_j||^2          the clustering term, eq. 11-12
             first with soft weights delta_ij = softmax_i(-dist(a_i, g_j) / T) (eq. 10, the warm-up),
             then with hard ones, each box on its best-IoU anchor (training after the warm-up).

Each step of `learned` computes delta from the current anchors (detached, as in training) and then
minimises L exactly for that delta: s_i = delta-weighted mean of log g_j. That is the fixed point an
optimiser on L heads for; on VOC07 (30,638 boxes, 5 anchors at 416 px) Adam on the same objective
(lr 0.02-0.1, 330-600 full-batch steps) ended at mean IoU 0.6030, this at 0.6039, 10-20x faster.
The hard phase stops when no box changes anchor, so the result is an exact fixed point and the
same input always gives the same anchors.

The defaults (init uniform, T 0.1, dist iou, at most 30 soft steps) are ours, measured on VOC07
train+val+test at 416 px: see DEFAULT_* below and bench/fit_speed.py.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from trainer.model.anchors import identical_init, kmeans_init, uniform_init
from trainer.model.assign import soft_weights
from trainer.model.boxes import shape_iou

log = logging.getLogger(__name__)

METHODS = ("kmeans", "learned")
INITS = ("identical", "uniform", "kmeans")

# Boxes narrower or lower than this (pixels at the input size) are left out of the fit, as YOLOv5's
# autoanchor does: at that size a box's shape is mostly annotation noise, and log g would dominate L.
MIN_BOX_PX = 2.0
# Measured on VOC07 (5 anchors, 416 px): from uniform, kmeans, tiny (4 px), huge (400 px) and
# identical starts every setting ends at one of two fixed points, mean IoU 0.6039 or 0.6030, both
# above k-means' 0.5898. Uniform is the cheapest start (no k-means run) and reaches 0.6039.
DEFAULT_INIT = "uniform"
# T and dist as in training (trainer.config.SoftAssignConfig): 1 - IoU lies in [0, 1], so a box
# that no anchor overlaps is shared evenly and pulls every starved anchor towards the data.
DEFAULT_TEMPERATURE = 0.1
DEFAULT_DIST = "iou"
# The soft phase is what makes a bad start harmless. On VOC07 every start lies near the data and
# 0, 10, 30 or 100 soft steps all end at 0.6030-0.6039. On a 5-shape mixture with all anchors
# started at 300 px (outside the data), hard steps alone leave 4 anchors serving no box (IoU 0.40),
# while 10 or 30 soft steps recover all 5 shapes (IoU 0.86). One soft step costs ~3 ms on VOC07.
DEFAULT_SOFT_STEPS = 30
# The hard phase ends when no box changes anchor: 20-80 steps on VOC07. The cap only guards cycles.
DEFAULT_MAX_HARD_STEPS = 300
# Soft steps stop early once no anchor moves more than this in log space (1e-6 is 0.0001 %).
_SOFT_TOL = 1e-6
# Coinciding anchors stay equal under any assignment that treats them alike; in training the
# network's random weights split them, here a seeded 1 % jitter in log space does.
_SPLIT_JITTER = 0.01


@dataclass
class FitResult:
    """Anchors fitted to box shapes. Every size is (w, h) in pixels at the input size.

    anchors: [A, 2] the result, sorted by area.
    init: [A, 2] where `learned` started, row k the start of anchors[k]; None for kmeans.
    path: [T, A, 2] the anchors after each step, init first (learned); None for kmeans.
    boxes_per_anchor: [A] boxes whose best-IoU anchor is each anchor.
    steps: soft + hard steps taken (learned), None for kmeans (its iterations are internal).
    """

    method: str
    anchors: Tensor
    init: Tensor | None
    steps: int | None
    seconds: float
    boxes_used: int
    boxes_left_out: int  # under MIN_BOX_PX in w or h
    boxes_per_anchor: Tensor
    soft_steps: int = 0
    hard_steps: int = 0
    converged: bool = True  # the hard phase ended with no box changing anchor
    path: Tensor | None = None
    settings: dict = field(default_factory=dict)


def usable_boxes(boxes_wh, min_px: float = MIN_BOX_PX) -> tuple[Tensor, int]:
    """([n, 2] float64 boxes at least `min_px` in w and h, count left out). Non-finite ones go too."""
    boxes = torch.as_tensor(boxes_wh, dtype=torch.float64).reshape(-1, 2)
    if len(boxes) == 0:
        raise ValueError("no boxes to fit anchors to: the dataset has no (trainable) boxes")
    keep = torch.isfinite(boxes).all(1) & (boxes >= min_px).all(1)
    if not bool(keep.any()):
        raise ValueError(
            f"no boxes to fit anchors to: all {len(boxes)} boxes are under {min_px:g} px in width or "
            "height at the input size (a larger --image-size makes them bigger)"
        )
    return boxes[keep], int((~keep).sum())


def starting_anchors(init: str | Tensor, num: int, boxes: Tensor, seed: int = 0) -> Tensor:
    """[A, 2] float64 pixels: a named init (identical, uniform, kmeans) or an explicit list."""
    if isinstance(init, str):
        if init == "identical":
            return identical_init(num, boxes).double()
        if init == "uniform":
            return uniform_init(num, boxes).double()
        if init == "kmeans":
            return kmeans_init(num, boxes, seed=seed).double()
        raise ValueError(f"unknown init {init!r}: expected one of {', '.join(INITS)} or a list of (w, h)")
    wh = torch.as_tensor(init, dtype=torch.float64).reshape(-1, 2)
    if len(wh) != num or not bool((wh > 0).all() & torch.isfinite(wh).all()):
        raise ValueError(f"init anchors must be {num} positive (w, h) pairs, got {tuple(wh.shape)}")
    return wh


def fit_anchors(
    boxes_wh,
    num: int,
    method: str = "learned",
    *,
    seed: int = 0,
    init: str | Tensor = DEFAULT_INIT,
    temperature: float = DEFAULT_TEMPERATURE,
    dist: str = DEFAULT_DIST,
    soft_steps: int = DEFAULT_SOFT_STEPS,
    max_hard_steps: int = DEFAULT_MAX_HARD_STEPS,
    min_px: float = MIN_BOX_PX,
) -> FitResult:
    """Fits `num` anchors to boxes [N, 2] (w, h) pixels at the input size. Deterministic.

    Boxes under `min_px` in w or h are left out and counted. Raises ValueError when no box is left.
    With no more distinct shapes than anchors both methods return every distinct shape (the most
    frequent ones repeated): that fit is exact and there is nothing to optimise.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    if num < 1:
        raise ValueError(f"the number of anchors must be at least 1, got {num}")
    if temperature <= 0:
        raise ValueError(f"the temperature must be positive, got {temperature}")
    started = time.perf_counter()
    boxes, left_out = usable_boxes(boxes_wh, min_px)
    settings: dict = {"min_px": min_px, "seed": seed}
    with _one_thread():
        if method == "kmeans":
            anchors = kmeans_init(num, boxes, seed=seed).double()
            return _result(method, anchors, None, None, boxes, left_out, started, settings=settings)
        settings |= {
            "init": init if isinstance(init, str) else "list",
            "temperature": temperature,
            "dist": dist,
            "soft_steps": soft_steps,
            "max_hard_steps": max_hard_steps,
        }
        start = starting_anchors(init, num, boxes, seed)
        if _few_shapes(boxes, num):
            exact = kmeans_init(num, boxes).double()  # every distinct shape an anchor: L = 0
            return _result(method, exact, start, None, boxes, left_out, started, settings=settings)
        path, soft, hard, converged = _learn(
            boxes, start, seed, temperature, dist, soft_steps, max_hard_steps
        )
        return _result(
            method, path[-1], start, path, boxes, left_out, started, soft, hard, converged, settings
        )


@contextmanager
def _one_thread():
    """Runs torch on one intra-op thread, then restores the previous count.

    The tensors here are small ([N, A] with A ~ 5), so threads barely help, and when other processes
    keep the cores busy, torch's spinning worker threads make every op wait: on the 2-core machine
    with a training run beside it, VOC07's fit took 7.4 s on 2 threads and 0.32 s on one.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _learn(
    boxes: Tensor, start: Tensor, seed: int, temperature: float, dist: str, soft_steps: int, max_hard: int
) -> tuple[Tensor, int, int, bool]:
    """The soft then hard phase from `start` [A, 2] px on boxes [N, 2] px.

    Returns (path [T, A, 2] px, start first and result last, soft steps, hard steps, settled).
    """
    log_g = boxes.log()
    s = _split_coinciding(start.log(), seed)
    path = [start.log()] if torch.equal(s, start.log()) else [start.log(), s]
    soft = 0
    while soft < soft_steps:
        soft += 1
        delta = soft_weights(boxes, s.exp(), temperature, dist)  # [N, A], eq. 10
        new = _weighted_mean(delta, log_g, s)
        path.append(new)
        moved = float((new - s).abs().max())
        s = new
        if moved < _SOFT_TOL:
            break

    hard, settled, previous = 0, False, None
    while hard < max_hard:
        best = shape_iou(boxes, s.exp()).argmax(1)  # YOLOv2's assignment: best shape IoU
        if previous is not None and torch.equal(best, previous):
            settled = True  # no box changed anchor: another step would change nothing
            break
        hard += 1
        previous = best
        s = _assigned_mean(best, log_g, s)
        path.append(s)
    if not settled:
        log.warning("hard phase not settled after %d steps: anchors are from the last one", max_hard)
    return torch.stack(path).exp(), soft, hard, settled


def _few_shapes(boxes: Tensor, num: int) -> bool:
    """At most `num` distinct (w, h) rows? Column-wise uniques are cheap and usually decide it."""
    if len(boxes[:, 0].unique()) > num or len(boxes[:, 1].unique()) > num:
        return False
    return len(boxes.unique(dim=0)) <= num


def _split_coinciding(s: Tensor, seed: int) -> Tensor:
    """[A, 2] log anchors, jittered (seeded) if any two coincide, else unchanged."""
    gaps = (s[:, None, :] - s[None, :, :]).abs().amax(-1)
    gaps.fill_diagonal_(float("inf"))
    if len(s) < 2 or float(gaps.min()) > 1e-6:
        return s
    gen = torch.Generator().manual_seed(seed)
    return s + _SPLIT_JITTER * torch.randn(s.shape, generator=gen, dtype=s.dtype)


def _weighted_mean(delta: Tensor, log_g: Tensor, s: Tensor) -> Tensor:
    """argmin_s sum_ij delta_ij ||s_i - log g_j||^2: each anchor the delta-weighted mean of log g.

    An anchor with (numerically) no weight keeps its place rather than dividing by zero.
    """
    mass = delta.sum(0)  # [A]
    mean = (delta.T @ log_g) / mass.clamp(min=1e-300)[:, None]
    return torch.where(mass[:, None] > 1e-12, mean, s)


def _assigned_mean(best: Tensor, log_g: Tensor, s: Tensor) -> Tensor:
    """The hard case of `_weighted_mean`: mean log g of each anchor's boxes; an empty anchor stays."""
    total = torch.zeros_like(s).index_add_(0, best, log_g)
    count = torch.bincount(best, minlength=len(s)).to(s)
    return torch.where(count[:, None] > 0, total / count.clamp(min=1)[:, None], s)


def _result(
    method: str,
    anchors: Tensor,
    init: Tensor | None,
    path: Tensor | None,
    boxes: Tensor,
    left_out: int,
    started: float,
    soft: int = 0,
    hard: int = 0,
    converged: bool = True,
    settings: dict | None = None,
) -> FitResult:
    """Sorts by area (init and path rows follow their anchor) and counts each anchor's boxes."""
    order = anchors.prod(-1).argsort(stable=True)
    anchors = anchors[order].float()
    per_anchor = torch.bincount(shape_iou(boxes, anchors.double()).argmax(1), minlength=len(anchors))
    return FitResult(
        method=method,
        anchors=anchors,
        init=None if init is None else init[order].float(),
        steps=None if method == "kmeans" else soft + hard,
        seconds=time.perf_counter() - started,
        boxes_used=len(boxes),
        boxes_left_out=left_out,
        boxes_per_anchor=per_anchor,
        soft_steps=soft,
        hard_steps=hard,
        converged=converged,
        path=None if path is None else path[:, order].float(),
        settings=settings or {},
    )
