"""The mmdetection `AnchorGenerator` closest to a set of learned anchors (RetinaNet, Faster R-CNN FPN).

mmdetection's AnchorGenerator (mmdet/models/task_modules/prior_generators/anchor_generator.py)
puts the same pattern of shapes at every level, scaled by the level's stride s (`base_sizes` left
unset, so each level's base size is its stride):

    scale_i = octave_base_scale * 2 ** (i / scales_per_octave),   i = 0 .. scales_per_octave - 1
    for every ratio r (= h / w) and every scale_i:  w = s * scale_i / sqrt(r),  h = s * scale_i * sqrt(r)

so a level has len(ratios) * scales_per_octave anchors. `center_offset` moves the anchors, not
their shapes, so it plays no part here. The learned anchors are free shapes per level; the fit
searches the generator's few parameters for the pattern that best covers the same targets (the
boxes when given, else the learned anchors themselves), judged by the mean best shape IoU over all
the generator's anchors of all levels, and reports that and BPR beside the learned anchors' own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral

import torch
from torch import Tensor

from trainer.model.anchors import anchor_fit
from trainer.model.boxes import shape_iou
from trainer.torch_threads import one_thread

SEARCH_SAMPLE = 4096  # targets the search scores on (a fixed random sample); the report uses them all
_COARSE = [2 ** (j / 24) for j in range(-24, 97)]  # octave_base_scale 0.5 .. 16, 24 steps an octave
_STANDARD_RATIOS = {1: [1.0], 3: [0.5, 1.0, 2.0]}  # mmdetection's usual sets, tried beside the learned


def checked_strides(strides: int | Sequence[int]) -> list[int]:
    """One stride, or one per level finest first, as a list; ValueError unless positive ascending ints."""
    given = [strides] if isinstance(strides, Integral) else None
    if isinstance(strides, Sequence) and not isinstance(strides, str):
        given = list(strides)
    if not given or any(isinstance(s, bool) or not isinstance(s, Integral) for s in given):
        raise ValueError(f"strides must be an int or a non-empty list of ints, got {strides!r}")
    given = [int(s) for s in given]
    if any(s < 1 for s in given) or any(b <= a for a, b in zip(given, given[1:], strict=False)):
        raise ValueError(f"strides must be positive and ascending (finest level first), got {given}")
    return given


def generator_shapes(
    octave_base_scale: float, scales_per_octave: int, ratios: Sequence[float], strides: Sequence[int]
) -> Tensor:
    """[L * len(ratios) * scales_per_octave, 2] (w, h) pixels by mmdetection's rule, level after level."""
    octave = [octave_base_scale * 2 ** (i / scales_per_octave) for i in range(scales_per_octave)]
    scales = torch.tensor(octave, dtype=torch.float64)[None, :]
    root = torch.tensor([float(r) for r in ratios], dtype=torch.float64).sqrt()[:, None]
    # ratio-major, scales inner, as mmdetection's scale_major=True; the order does not matter here
    unit = torch.stack([(scales / root).reshape(-1), (scales * root).reshape(-1)], dim=-1)
    return torch.cat([unit * s for s in strides])


def _score(targets: Tensor, shapes: Tensor) -> float:
    return float(shape_iou(targets, shapes).max(1).values.mean())


def _ratio_groups(log_ratios: Tensor, k: int, iters: int = 50) -> list[float]:
    """k ratios: 1-D k-means of the learned log(h / w), started at quantiles; empty groups dropped."""
    x = log_ratios.sort().values
    centres = torch.quantile(x, (torch.arange(k, dtype=x.dtype) + 0.5) / k)
    for _ in range(iters):
        nearest = (x[:, None] - centres[None, :]).abs().argmin(1)
        means = [x[nearest == c].mean() if (nearest == c).any() else centres[c] for c in range(k)]
        centres = torch.stack(means)
    used = sorted({int(c) for c in (x[:, None] - centres[None, :]).abs().argmin(1)})
    return sorted({round(math.exp(float(centres[c])), 2) for c in used})


def _best_scale(sample: Tensor, spo: int, ratios: list[float], strides: list[int], grid) -> tuple:
    """(mean best IoU, octave_base_scale) of the best scale on `grid`."""
    scored = [(_score(sample, generator_shapes(o, spo, ratios, strides)), o) for o in grid]
    return max(scored)


def _refined(sample: Tensor, spo: int, ratios: list[float], scale: float, strides: list[int]):
    """Coordinate search: the scale in 1/192-octave steps, each ratio in 1/16-octave steps."""
    for _ in range(3):  # j = 0 keeps the current scale, so the score never drops
        fine = [scale * 2 ** (j / 192) for j in range(-8, 9)]
        best, scale = _best_scale(sample, spo, ratios, strides, fine)
        for i in range(len(ratios)):
            for j in range(-4, 5):
                trial = ratios[:i] + [ratios[i] * 2 ** (j / 16)] + ratios[i + 1 :]
                iou = _score(sample, generator_shapes(scale, spo, trial, strides))
                if iou > best:
                    best, ratios = iou, trial
    return scale, ratios


def _rounded(sample: Tensor, spo: int, ratios: list[float], scale: float, strides: list[int]):
    """The parameters on the 2-decimal grid they are written with: the best of the nearest few."""
    scale = max(0.01, round(scale, 2))
    ratios = [max(0.01, round(r, 2)) for r in ratios]
    best = _score(sample, generator_shapes(scale, spo, ratios, strides))
    for i in [None, *range(len(ratios))]:  # None: the scale
        for d in (-0.03, -0.02, -0.01, 0.01, 0.02, 0.03):
            trial_scale = scale if i is not None else round(scale + d, 2)
            trial = ratios if i is None else ratios[:i] + [round(ratios[i] + d, 2)] + ratios[i + 1 :]
            if trial_scale <= 0 or min(trial) <= 0:
                continue
            iou = _score(sample, generator_shapes(trial_scale, spo, trial, strides))
            if iou > best:
                best, scale, ratios = iou, trial_scale, trial
    return scale, sorted(set(ratios))


def fit_anchor_generator(
    anchors_px: Tensor,
    strides: int | Sequence[int],
    boxes_wh: Tensor | None = None,
    per_location: int | None = None,
) -> dict:
    """The AnchorGenerator closest to the learned anchors [L * A, 2] (grouped by level, finest first).

    It has `per_location` anchors a level (default A, as the learned set): scales_per_octave 1..3
    times as many ratios. Ratio sets tried: the learned anchors' aspect ratios grouped by 1-D
    k-means, and [1.0] / [0.5, 1.0, 2.0] where they have the size. octave_base_scale is searched on
    0.5..16 (24 steps an octave), then it and the ratios are refined and rounded to 2 decimals. The
    metrics (trainer.model.anchors.anchor_fit, BPR ratio 4) are of those rounded parameters.
    """
    levels = checked_strides(strides)
    wh = torch.as_tensor(anchors_px, dtype=torch.float64).detach().cpu()
    if wh.ndim != 2 or wh.shape[1] != 2 or len(wh) == 0 or not bool((torch.isfinite(wh) & (wh > 0)).all()):
        raise ValueError(f"anchors must be finite positive (w, h) pairs [K, 2], got {tuple(wh.shape)}")
    if len(wh) % len(levels):
        raise ValueError(f"{len(wh)} anchors do not split into {len(levels)} levels of equal size")
    per_location = per_location or len(wh) // len(levels)
    if per_location < 1:
        raise ValueError(f"the anchors per location must be at least 1, got {per_location}")

    targets, on = wh, "anchors"
    if boxes_wh is not None:
        boxes = torch.as_tensor(boxes_wh, dtype=torch.float64).reshape(-1, 2)
        boxes = boxes[(boxes > 0).all(-1) & torch.isfinite(boxes).all(-1)]
        if len(boxes):
            targets, on = boxes, "boxes"
    sample = targets
    if len(targets) > SEARCH_SAMPLE:
        pick = torch.randperm(len(targets), generator=torch.Generator().manual_seed(0))[:SEARCH_SAMPLE]
        sample = targets[pick]

    with one_thread():  # 12.6 s on 2 threads on VOC07 under load, 0.27 s on one
        spo, scale, ratios = _search(sample, wh, levels, per_location)
        shapes = generator_shapes(scale, spo, ratios, levels)
        generator, learned = anchor_fit(shapes, targets), anchor_fit(wh, targets)
    return {
        "type": "AnchorGenerator",
        "octave_base_scale": scale,
        "scales_per_octave": spo,
        "ratios": ratios,
        "strides": levels,
        "anchors_per_location": len(shapes) // len(levels),
        "anchors": [[round(w, 3), round(h, 3)] for w, h in shapes.tolist()],
        "measured_on": on,
        "targets": len(targets),
        "generator": generator,
        "learned": learned,
    }


def _search(sample: Tensor, wh: Tensor, levels: list[int], per_location: int) -> tuple:
    """(scales_per_octave, octave_base_scale, ratios) with the best mean best IoU on `sample`."""
    log_ratios = (wh[:, 1] / wh[:, 0]).log()
    candidates = []
    for spo in (1, 2, 3):
        if per_location % spo:
            continue
        k = per_location // spo
        sets = [_ratio_groups(log_ratios, k)] + ([_STANDARD_RATIOS[k]] if k in _STANDARD_RATIOS else [])
        for ratios in sets:
            iou, scale = _best_scale(sample, spo, ratios, levels, _COARSE)
            candidates.append((iou, -spo, scale, ratios))
    _, neg_spo, scale, ratios = max(candidates, key=lambda c: c[:2])
    scale, ratios = _refined(sample, -neg_spo, list(ratios), scale, levels)

    scale, ratios = _rounded(sample, -neg_spo, ratios, scale, levels)
    return -neg_spo, scale, ratios


def anchor_generator_config(fit: dict) -> str:
    """`fit` as the `anchor_generator=dict(...)` entry of an mmdetection bbox_head, its fit as comments."""
    g, a = fit["generator"], fit["learned"]
    return (
        f"# closest AnchorGenerator, measured on {fit['targets']} {fit['measured_on']}:\n"
        f"# mean best IoU {g['mean_best_iou']:.4f} (learned anchors {a['mean_best_iou']:.4f}), "
        f"BPR {g['bpr']:.4f} (learned {a['bpr']:.4f})\n"
        "anchor_generator=dict(\n"
        "    type='AnchorGenerator',\n"
        f"    octave_base_scale={fit['octave_base_scale']!r},\n"
        f"    scales_per_octave={fit['scales_per_octave']},\n"
        f"    ratios={fit['ratios']!r},\n"
        f"    strides={fit['strides']!r})"
    )
