"""The learned anchors: a log-space parameter, its initialisations, and how well it fits the boxes.

Anchors are shapes `(w, h)` in pixels at the model's input size. The parameter is
`s = (log w, log h)`, shape `[A, 2]`: log space makes the w/h loss of eq. 3-4 linear in `s`, keeps
the shapes positive, and gives a learning rate that means the same for small and large anchors.
Grid-cell units (darknet's convention) are pixels divided by the stride.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from trainer.config import AnchorConfig
from trainer.model.boxes import shape_iou, wh_ratio_metric

log = logging.getLogger(__name__)


def pixels_to_cells(wh_pixels: Tensor, stride: int) -> Tensor:
    return wh_pixels / stride


def cells_to_pixels(wh_cells: Tensor, stride: int) -> Tensor:
    return wh_cells * stride


class Anchors(nn.Module):
    """A anchor shapes held as `log_wh`, an `nn.Parameter [A, 2]` saved in every state dict.

    `learn=False` freezes them (the baseline detector): no gradient, no optimizer group.
    """

    def __init__(self, wh_pixels: Tensor, learn: bool = True):
        super().__init__()
        wh = torch.as_tensor(wh_pixels, dtype=torch.float32)
        if wh.ndim != 2 or wh.shape[1] != 2 or not bool((wh > 0).all()):
            raise ValueError(f"anchors must be positive (w, h) pairs of shape [A, 2], got {tuple(wh.shape)}")
        self.log_wh = nn.Parameter(wh.log(), requires_grad=learn)

    @property
    def num(self) -> int:
        return self.log_wh.shape[0]

    @property
    def learn(self) -> bool:
        return self.log_wh.requires_grad

    def wh(self) -> Tensor:
        """[A, 2] widths and heights in pixels at the input size (differentiable)."""
        return self.log_wh.exp()

    def param_group(self, lr: float) -> dict:
        """The anchors' own optimizer group: own learning rate, never any weight decay."""
        return {"params": [self.log_wh], "lr": lr, "weight_decay": 0.0, "name": "anchors"}

    def extra_repr(self) -> str:
        pairs = ", ".join(f"{w:.1f}x{h:.1f}" for w, h in self.wh().detach().tolist())
        return f"[{pairs}] px, learn={self.learn}"


# --- initialisations: each returns [A, 2] pixels, sorted by area ---------------------------------


def _sorted_by_area(wh: Tensor) -> Tensor:
    return wh[wh.prod(-1).argsort(stable=True)]


def _check_boxes(boxes_wh: Tensor) -> Tensor:
    boxes_wh = torch.as_tensor(boxes_wh, dtype=torch.float64).reshape(-1, 2)
    boxes_wh = boxes_wh[(boxes_wh > 0).all(-1) & torch.isfinite(boxes_wh).all(-1)]
    if len(boxes_wh) == 0:
        raise ValueError("cannot initialise anchors from the data: it has no boxes with positive size")
    return boxes_wh


def identical_init(num: int, boxes_wh: Tensor | None = None, size: float | None = None) -> Tensor:
    """All A anchors equal: a square of `size` pixels, or the boxes' geometric mean shape."""
    if size is not None:
        return torch.full((num, 2), float(size))
    if boxes_wh is None:
        raise ValueError("identical init needs either a size or the training boxes")
    mean = _check_boxes(boxes_wh).log().mean(0).exp()
    return mean.float().expand(num, 2).clone()


def uniform_init(num: int, boxes_wh: Tensor, low_q: float = 0.02, high_q: float = 0.98) -> Tensor:
    """A anchors evenly spaced in log w-h space along the data's range.

    The range is the box from the `low_q` to the `high_q` quantile of log w and of log h (robust to
    a few outliers); anchor k sits at fraction (k + 0.5) / A along its diagonal.
    """
    logs = _check_boxes(boxes_wh).log()
    lo = torch.quantile(logs, low_q, dim=0)
    hi = torch.quantile(logs, high_q, dim=0)
    frac = (torch.arange(num, dtype=torch.float64) + 0.5) / num
    return (lo + frac[:, None] * (hi - lo)).exp().float()


KMEANS_CENTROIDS = ("median", "mean")


def kmeans_init(
    num: int, boxes_wh: Tensor, seed: int = 0, iters: int = 300, centroid: str = "median"
) -> Tensor:
    """YOLOv2's k-means on box shapes with distance 1 - shape IoU. Deterministic given `seed`.

    `centroid`: each cluster's new centre is the per-coordinate median of its boxes' w and h
    (default), or their mean (YOLOv2's). Means follow a cluster's few large boxes; on VOC07 and
    coco128 at 416 px the median's anchors fit better (docs/fit.md). Seeding is k-means++ from a
    private generator; an empty cluster is re-seeded with the box worst served by the current
    centres. With fewer distinct shapes than anchors, every distinct shape becomes an anchor and the
    most frequent shapes fill the remaining slots.
    """
    if centroid not in KMEANS_CENTROIDS:
        expected = ", ".join(KMEANS_CENTROIDS)
        raise ValueError(f"unknown k-means centroid {centroid!r}: expected one of {expected}")
    boxes = _check_boxes(boxes_wh)
    distinct, counts = boxes.unique(dim=0, return_counts=True)
    if len(distinct) <= num:
        if len(distinct) < num:
            log.warning("only %d distinct box shapes for %d anchors: some anchors repeat", len(distinct), num)
        extra = counts.argsort(descending=True, stable=True).repeat(num)[: num - len(distinct)]
        return _sorted_by_area(torch.cat([distinct, distinct[extra]]).float())

    w, h = boxes[:, 0].contiguous(), boxes[:, 1].contiguous()
    gen = torch.Generator().manual_seed(seed)
    centres = boxes[torch.randint(len(boxes), (1,), generator=gen)]
    while len(centres) < num:  # k-means++: next centre with probability ~ distance^2
        d = (1 - _iou_columns(centres, w, h)).min(0).values.clamp(min=0) ** 2
        if d.sum() <= 0:
            d = torch.ones_like(d)
        centres = torch.cat([centres, boxes[torch.multinomial(d, 1, generator=gen)]])

    for _ in range(iters):
        dist = 1 - _iou_columns(centres, w, h)  # [A, N]
        nearest_dist, nearest = dist.min(0)
        new, size = _centroids(boxes, nearest, num, centroid)
        empty = size == 0
        if empty.any():  # re-seed empty clusters with the worst-served boxes
            worst = nearest_dist.argsort(descending=True)[: int(empty.sum())]
            new[empty] = boxes[worst]
        if torch.allclose(new, centres, rtol=0, atol=1e-9):
            break
        centres = new
    return _sorted_by_area(centres.float())


def _iou_columns(anchors: Tensor, w: Tensor, h: Tensor) -> Tensor:
    """[A, N] shape IoU of anchors [A, 2] with boxes given as columns w, h [N]: the same values as
    trainer.model.boxes.shape_iou(boxes, anchors).T, laid out so the min over anchors runs along
    rows (several times faster in torch on the CPU for A ~ 5 and N ~ 30,000)."""
    inter = torch.minimum(anchors[:, 0:1], w) * torch.minimum(anchors[:, 1:2], h)
    return inter / (anchors.prod(1)[:, None] + w * h - inter + 1e-9)


def _centroids(boxes: Tensor, nearest: Tensor, num: int, centroid: str) -> tuple[Tensor, Tensor]:
    """([num, 2] each cluster's mean or per-coordinate median (w, h), [num] its size); 0 if empty."""
    size = torch.bincount(nearest, minlength=num).to(boxes)
    if centroid == "mean":
        total = torch.zeros(num, 2, dtype=boxes.dtype).index_add_(0, nearest, boxes)
        return total / size.clamp(min=1)[:, None], size
    new = torch.zeros(num, 2, dtype=boxes.dtype)
    order = nearest.argsort(stable=True)  # boxes grouped by cluster
    for k, group in enumerate(boxes[order].split(size.long().tolist())):
        if len(group):
            new[k] = torch.quantile(group, 0.5, dim=0)  # the mean of the two middle ones if even
    return new, size


def initial_anchors(cfg: AnchorConfig, boxes_wh: Tensor | None) -> Tensor:
    """[A, 2] pixels for the configured init. `boxes_wh` are the training boxes' shapes."""
    if cfg.init == "list":
        return torch.tensor(cfg.values, dtype=torch.float32)
    if cfg.init == "identical":
        return identical_init(cfg.num, boxes_wh, cfg.size)
    if boxes_wh is None:
        raise ValueError(f"anchors.init={cfg.init!r} needs the training boxes")
    if cfg.init == "uniform":
        return uniform_init(cfg.num, boxes_wh)
    return kmeans_init(cfg.num, boxes_wh, seed=cfg.seed)


# --- how well a set of anchors fits the boxes ----------------------------------------------------

# What each `anchor_fit` metric means, in one line: `anchor-opt train` and `anchor-opt fit` print these.
FIT_METRICS = {
    "mean_best_iou": "each box's shape IoU with its best anchor, averaged (YOLOv2)",
    "bpr": "best possible recall: boxes with an anchor within 4x in w, h",
    "anchors_per_target": "anchors within 4x of a box in w and h, on average",
}


def anchor_fit(anchors_wh: Tensor, boxes_wh: Tensor, ratio_threshold: float = 4.0) -> dict[str, float]:
    """Fit metrics of anchors [A, 2] to boxes [N, 2], both in pixels at the same scale.

    mean_best_iou       mean over boxes of the shape IoU with the best anchor (YOLOv2's "avg IoU")
    bpr                 best possible recall: share of boxes that some anchor can match, i.e. with
                        w and h ratios under `ratio_threshold` (YOLOv5's definition)
    anchors_per_target  mean number of anchors that can match a box (same ratio rule)
    """
    anchors_wh = torch.as_tensor(anchors_wh, dtype=torch.float32)
    boxes_wh = torch.as_tensor(boxes_wh, dtype=torch.float32).reshape(-1, 2)
    if len(boxes_wh) == 0:
        return {"mean_best_iou": float("nan"), "bpr": float("nan"), "anchors_per_target": float("nan")}
    iou = shape_iou(boxes_wh, anchors_wh)
    match = wh_ratio_metric(boxes_wh, anchors_wh) < ratio_threshold
    return {
        "mean_best_iou": float(iou.max(1).values.mean()),
        "bpr": float(match.any(1).float().mean()),
        "anchors_per_target": float(match.sum(1).float().mean()),
    }


def matched_log_error(learned_wh: Tensor, true_wh: Tensor) -> float:
    """Mean absolute log error between two anchor sets of equal size under the best matching.

    Averaged over anchors and over the two coordinates: 0.10 means shapes off by about 10 %.
    The matching is optimal, not greedy: a dynamic programme over the subsets of true shapes
    already matched (2^A states, so A <= 16; nine anchors on three levels take milliseconds).
    """
    a = torch.as_tensor(learned_wh, dtype=torch.float64).log()
    b = torch.as_tensor(true_wh, dtype=torch.float64).log()
    if a.shape != b.shape or a.shape[0] > 16:
        raise ValueError(f"need two [A, 2] sets with A <= 16, got {tuple(a.shape)} and {tuple(b.shape)}")
    cost = (a[:, None, :] - b[None, :, :]).abs().mean(-1).tolist()  # [A, A]
    n = len(cost)
    best = [0.0] + [float("inf")] * ((1 << n) - 1)  # best[mask]: first popcount(mask) rows matched to mask
    for mask in range(1 << n):
        row = bin(mask).count("1")
        if row >= n or best[mask] == float("inf"):
            continue
        for col in range(n):
            if not mask & (1 << col):
                nxt = mask | (1 << col)
                best[nxt] = min(best[nxt], best[mask] + cost[row][col])
    return best[-1] / n if n else 0.0
