"""Anchors without training: fit anchor shapes to a dataset's box shapes alone.

Three methods, on box shapes `(w, h)` in pixels at the model's input size:

    kmeans      YOLOv2's k-means with distance 1 - shape IoU, median centroids by default
                (trainer.model.anchors.kmeans_init; `centroid="mean"` is YOLOv2's own).
    learned     the paper's log-space objective (Zhong et al., WACV 2020) with the anchors as the
                only parameters: a soft warm-up, then a hard phase (trainer.fit.learned), whose
                objective is either the log-space one (`refine_steps=0`, objective "log-space") or,
                by default, the mean best IoU itself under a BPR guard (trainer.fit.refine,
                objective "log-space+iou-refine").
    autoanchor  YOLOv5's autoanchor, re-implemented as a baseline (trainer.fit.autoanchor).

Several levels: `levels` L fits `num` = L * A anchors jointly; sorted by area they are cut into L
groups of A, the finest level (smallest stride) first (trainer.model.levels). `min_stride_fraction`
F keeps every anchor at least F x its level's stride in w and h: after every step of `learned`, and
on the result of the other two (trainer.fit.strides).

The defaults (init uniform, T 0.1, dist iou, at most 30 soft steps) are ours, measured on VOC07
train+val+test at 416 px: see trainer.fit.learned and bench/fit_speed.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from trainer.fit.autoanchor import autoanchor
from trainer.fit.learned import few_shapes, learn
from trainer.fit.refine import DEFAULT_REFINE_STEPS, refine_iou
from trainer.fit.shapes import Shapes
from trainer.fit.strides import check_fraction, check_strides, default_strides, stride_floor
from trainer.model.anchors import KMEANS_CENTROIDS, identical_init, kmeans_init, uniform_init
from trainer.model.levels import anchor_levels
from trainer.torch_threads import one_thread

METHODS = ("kmeans", "learned", "autoanchor")
INITS = ("identical", "uniform", "kmeans")

# A box is fitted when its width OR its height is at least this many pixels at the input size, as
# in YOLOv5's autoanchor: a box under 2 px both ways is mostly annotation noise (log g would
# dominate L), while a 1 x 30 px pole is a real shape. The metrics are on all boxes all the same.
MIN_BOX_PX = 2.0
BOX_RULE = "w >= {px:g} px or h >= {px:g} px at the input size"
# Measured on VOC07 (5 anchors, 416 px): from uniform, kmeans, tiny (4 px), huge (400 px) and
# identical starts the log-space objective ends at one of two fixed points, mean IoU 0.6039 or
# 0.6030. Uniform is the cheapest start (no k-means run) and reaches 0.6039.
DEFAULT_INIT = "uniform"
# T and dist as in training (trainer.config.SoftAssignConfig): 1 - IoU lies in [0, 1], so a box
# that no anchor overlaps is shared evenly and pulls every starved anchor towards the data.
DEFAULT_TEMPERATURE = 0.1
DEFAULT_DIST = "iou"
# The soft phase is what makes a bad start harmless. On a 5-shape mixture with all anchors started
# at 300 px (outside the data), hard steps alone leave 4 anchors serving no box (IoU 0.40), while
# 10 or 30 soft steps recover all 5 shapes (IoU 0.86). One soft step costs ~0.5 ms on VOC07 (float32).
DEFAULT_SOFT_STEPS = 30
# The log-space hard phase ends when no box changes anchor: 20-80 steps on VOC07. The cap only
# guards cycles.
DEFAULT_MAX_HARD_STEPS = 300


@dataclass
class FitResult:
    """Anchors fitted to box shapes. Every size is (w, h) in pixels at the input size.

    anchors: [K, 2] the result, sorted by area; K = levels x anchors per level, level by level.
    init: [K, 2] where `learned` started, row k the start of anchors[k]; None otherwise.
    path: [T, K, 2] the anchors after the start and each step taken (learned); None otherwise.
    boxes_per_anchor: [K] fitted boxes whose best-IoU anchor is each anchor.
    steps: soft + hard + IoU steps (learned), None for the others (their iterations are internal).
    objective: what produced the anchors: log-space, log-space+iou-refine, kmeans-median,
    kmeans-mean or autoanchor.
    """

    method: str
    anchors: Tensor
    init: Tensor | None
    steps: int | None
    seconds: float
    boxes_used: int
    boxes_left_out: int  # under MIN_BOX_PX in both w and h, or not finite
    boxes_per_anchor: Tensor
    objective: str = "log-space"
    levels: int = 1
    strides: list[int] = field(default_factory=lambda: [32])
    anchor_levels: list[int] = field(default_factory=list)  # the level of each anchor
    soft_steps: int = 0
    hard_steps: int = 0
    refine_steps: int = 0
    refine: dict | None = None  # the IoU phase: mean IoU and BPR before and after, on the fitted boxes
    converged: bool = True  # the hard phase (or the IoU phase) ended for want of change
    path: Tensor | None = None
    settings: dict = field(default_factory=dict)


def usable_boxes(boxes_wh, min_px: float = MIN_BOX_PX) -> tuple[Tensor, int]:
    """([n, 2] float64 boxes with w or h at least `min_px`, count left out). Non-finite ones go too."""
    boxes = torch.as_tensor(boxes_wh, dtype=torch.float64).reshape(-1, 2)
    if len(boxes) == 0:
        raise ValueError("no boxes to fit anchors to: the dataset has no (trainable) boxes")
    keep = kept(boxes, min_px)
    if not bool(keep.any()):
        raise ValueError(
            f"no boxes to fit anchors to: all {len(boxes)} boxes are under {min_px:g} px in both width "
            "and height at the input size (a larger --image-size makes them bigger)"
        )
    return boxes[keep], int((~keep).sum())


def kept(boxes: Tensor, min_px: float = MIN_BOX_PX) -> Tensor:
    """[N] bool: the boxes a fit uses (finite, positive, w or h at least `min_px`)."""
    return torch.isfinite(boxes).all(1) & (boxes > 0).all(1) & (boxes >= min_px).any(1)


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
    refine_steps: int = DEFAULT_REFINE_STEPS,
    min_px: float = MIN_BOX_PX,
    centroid: str = "median",
    levels: int = 1,
    strides: list[int] | None = None,
    min_stride_fraction: float | None = None,
) -> FitResult:
    """Fits `num` anchors (all levels together) to boxes [N, 2] (w, h) px at the input size.

    Deterministic. Boxes under `min_px` in both w and h are left out and counted; ValueError when no
    box is left. With no more distinct shapes than anchors every method returns every distinct shape
    (the most frequent ones repeated): that fit is exact and there is nothing to optimise.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    if num < 1:
        raise ValueError(f"the number of anchors must be at least 1, got {num}")
    if temperature <= 0:
        raise ValueError(f"the temperature must be positive, got {temperature}")
    if refine_steps < 0:
        raise ValueError(f"--refine-steps must be 0 (off) or more, got {refine_steps}")
    if centroid not in KMEANS_CENTROIDS:
        raise ValueError(f"unknown --centroid {centroid!r}: expected one of {', '.join(KMEANS_CENTROIDS)}")
    strides = check_strides(strides if strides is not None else default_strides(levels), levels)
    if num % levels:
        raise ValueError(f"{num} anchors do not split into {levels} levels of equal size")
    fraction = check_fraction(min_stride_fraction)
    project = None if fraction is None else (lambda wh: stride_floor(wh, strides, fraction))
    started = time.perf_counter()
    boxes, left_out = usable_boxes(boxes_wh, min_px)
    settings: dict = {"min_px": min_px, "seed": seed, "min_stride_fraction": fraction}
    done = {"boxes": boxes, "left_out": left_out, "started": started, "strides": strides}
    done["settings"] = settings
    with one_thread():
        if method != "learned":
            if method == "kmeans":
                settings["centroid"] = centroid
                anchors = kmeans_init(num, boxes, seed=seed, centroid=centroid)
                objective = f"kmeans-{centroid}"
            else:
                anchors, objective = autoanchor(boxes, num, seed=seed), "autoanchor"
            return _result(method, stride_floor(anchors.double(), strides, fraction), objective, **done)
        settings |= {
            "init": init if isinstance(init, str) else "list",
            "temperature": temperature,
            "dist": dist,
            "soft_steps": soft_steps,
            "max_hard_steps": max_hard_steps,
            "refine_steps": refine_steps,
        }
        start = starting_anchors(init, num, boxes, seed)
        if few_shapes(boxes, num):
            exact = stride_floor(kmeans_init(num, boxes).double(), strides, fraction)  # every shape: L = 0
            return _result(method, exact, "log-space", init=start, **done)
        # With the IoU phase, the log-space phase is the soft warm-up alone: the IoU phase then does
        # what its hard steps would, for the mean best IoU instead of the log distance. Both run in
        # float32 (twice as fast); the log-space objective alone keeps float64, its fixed points exact.
        shapes = Shapes.of(boxes, torch.float32 if refine_steps else torch.float64)
        path, soft, hard, settled = learn(
            shapes, start, seed, temperature, dist, soft_steps, 0 if refine_steps else max_hard_steps, project
        )
        if not refine_steps:
            return _result(method, path[-1], "log-space", init=start, path=path, soft=soft, hard=hard,
                           converged=settled, **done)  # fmt: skip
        refined = refine_iou(shapes, path[-1], refine_steps, project=project)
        path = torch.cat([path, torch.stack(refined.path)]) if refined.path else path
        report = {
            "steps": refined.steps,
            "refused": refined.refused,
            "mean_best_iou_before": round(refined.iou_before, 4),
            "mean_best_iou_after": round(refined.iou_after, 4),
            "bpr_before": round(refined.bpr_before, 4),
            "bpr_after": round(refined.bpr_after, 4),
        }
        return _result(
            method, refined.anchors, "log-space+iou-refine", init=start, path=path, soft=soft,
            refine_steps=refined.steps, refine=report, converged=refined.settled, **done,
        )  # fmt: skip


def _result(
    method: str,
    anchors: Tensor,
    objective: str,
    *,
    boxes: Tensor,
    left_out: int,
    started: float,
    strides: list[int],
    settings: dict,
    init: Tensor | None = None,
    path: Tensor | None = None,
    soft: int = 0,
    hard: int = 0,
    refine_steps: int = 0,
    refine: dict | None = None,
    converged: bool = True,
) -> FitResult:
    """Sorts by area (init and path rows follow their anchor) and counts each anchor's boxes."""
    order = anchors.prod(-1).argsort(stable=True)
    anchors = anchors[order].float()
    per_anchor = torch.bincount(Shapes.of(boxes).best(anchors.double())[1], minlength=len(anchors))
    return FitResult(
        method=method,
        anchors=anchors,
        init=None if init is None else init[order].float(),
        steps=soft + hard + refine_steps if method == "learned" else None,
        seconds=time.perf_counter() - started,
        boxes_used=len(boxes),
        boxes_left_out=left_out,
        boxes_per_anchor=per_anchor,
        objective=objective,
        levels=len(strides),
        strides=list(strides),
        anchor_levels=anchor_levels(len(anchors), len(strides)),
        soft_steps=soft,
        hard_steps=hard,
        refine_steps=refine_steps,
        refine=refine,
        converged=converged,
        path=None if path is None else path[:, order].float(),
        settings=settings,
    )
