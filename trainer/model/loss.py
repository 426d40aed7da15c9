"""The YOLOv2 loss with the anchors kept in the graph, and the online clustering term.

For box j assigned to cell (gy, gx) with weights delta_j over the A anchors (trainer.model.assign), and
the prediction p_jk of anchor k at that cell:
    xy     (sigmoid(tx, ty) - centre offset in the cell)^2
    wh     (tw + log a_w - log g_w)^2 + (th + log a_h - log g_h)^2          eq. 3-4, a NOT detached
    obj    BCE(objectness, 1)
    cls    cross-entropy of the class logits
each weighted by delta_jk and summed; `noobj` is BCE(objectness, 0) on every other position except
those whose decoded box already overlaps a ground truth by more than `ignore_iou` (YOLOv2).
During warm-up, `cluster` adds eq. 11-12: lambda / (2N) sum_jk delta_jk ||log a_k - log g_j||^2,
online k-means in log space over the N boxes of the batch.
Box terms are summed per image and averaged over the batch (darknet's normalisation). With several
levels (model.levels) each level's terms are computed on its own predictions and anchors and summed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from trainer.config import LossConfig, SoftAssignConfig
from trainer.model.assign import Assignment, assign_levels
from trainer.model.boxes import box_iou
from trainer.model.decode import decode_boxes


def yolo_loss(
    pred: Tensor | Sequence[Tensor],
    log_anchors: Tensor,
    targets: Tensor,
    stride: int | Sequence[int],
    cfg: LossConfig,
    soft: SoftAssignConfig | None = None,
    cluster_weight: float = 0.0,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Returns (named loss terms including `total`, detached statistics).

    pred         [B, A, H, W, 5 + C] raw network output, or one such tensor per level (finest first)
    log_anchors  [L * A, 2] log (w, h) px; gradients flow into it through `wh` and `cluster`
    targets      [M, 6] (image index, class, x1, y1, x2, y2) px at the input size
    stride       the level's stride, or one per level
    soft         soft-assignment settings during warm-up, else None (hard assignment)
    cluster_weight  lambda of eq. 11 during warm-up, else 0

    With several levels every box is assigned over all anchors of all levels (trainer.model.assign)
    and each level's terms are summed; the clustering term runs over all anchors, as in one level.
    """
    preds = [pred] if isinstance(pred, Tensor) else list(pred)
    strides = [stride] if isinstance(stride, int) else list(stride)
    grids = [(p.shape[2], p.shape[3]) for p in preds]
    levels = assign_levels(targets, log_anchors, strides, grids, soft)
    per = log_anchors.shape[0] // len(preds)
    terms: dict[str, Tensor] = {}
    for level, (p_l, s_l, asg) in enumerate(zip(preds, strides, levels, strict=True)):
        part = _level_terms(p_l, log_anchors[level * per : (level + 1) * per], asg, targets, s_l, cfg)
        terms = part if not terms else {k: terms[k] + v for k, v in part.items()}
    delta = torch.cat([asg.weights for asg in levels], dim=1)  # [M, L * A]
    if cluster_weight > 0:
        log_wh = levels[0].log_wh
        sq = (log_anchors[None] - log_wh[:, None, :]).pow(2).sum(-1)  # T_jk of eq. 12
        terms["cluster"] = cluster_weight / (2 * max(len(log_wh), 1)) * (delta * sq).sum()
    terms["total"] = sum(terms.values())

    stats = {
        "assign_counts": torch.bincount(delta.detach().argmax(-1), minlength=delta.shape[1]),  # per anchor
        "num_boxes": torch.tensor(len(targets)),
    }
    return terms, stats


def _level_terms(
    pred: Tensor, log_anchors: Tensor, asg: Assignment, targets: Tensor, stride: int, cfg: LossConfig
) -> dict[str, Tensor]:
    """The weighted xy, wh, obj, noobj and cls terms of one level (the module docstring)."""
    b, a, h, w, _ = pred.shape
    delta = asg.weights  # [M, A]
    p = pred[asg.batch, :, asg.gy, asg.gx]  # [M, A, 5 + C]

    xy_err = (p[..., :2].sigmoid() - asg.offset_xy[:, None, :]).pow(2).sum(-1)
    wh_err = (p[..., 2:4] + log_anchors[None] - asg.log_wh[:, None, :]).pow(2).sum(-1)
    obj_err = F.binary_cross_entropy_with_logits(p[..., 4], torch.ones_like(p[..., 4]), reduction="none")
    cls_err = F.cross_entropy(
        p[..., 5:].reshape(-1, p.shape[-1] - 5), asg.cls.repeat_interleave(a), reduction="none"
    ).view(-1, a)

    # Background: every position no box is assigned to, minus those that already fit a box well.
    anchor_idx = torch.arange(a, device=pred.device).expand(asg.num, a)
    assigned = torch.zeros(b, a, h, w, device=pred.device)
    assigned.index_put_(
        (
            asg.batch[:, None].expand(-1, a),
            anchor_idx,
            asg.gy[:, None].expand(-1, a),
            asg.gx[:, None].expand(-1, a),
        ),
        delta,
        accumulate=True,
    )
    background = (assigned == 0) & ~_ignored(pred, log_anchors, targets, stride, cfg.ignore_iou)
    noobj_err = F.binary_cross_entropy_with_logits(
        pred[..., 4], torch.zeros_like(pred[..., 4]), reduction="none"
    )
    return {
        "xy": cfg.xy * (delta * xy_err).sum() / b,
        "wh": cfg.wh * (delta * wh_err).sum() / b,
        "obj": cfg.obj * (delta * obj_err).sum() / b,
        "noobj": cfg.noobj * (noobj_err * background).sum() / b,
        "cls": cfg.cls * (delta * cls_err).sum() / b,
    }


@torch.no_grad()
def _ignored(pred: Tensor, log_anchors: Tensor, targets: Tensor, stride: int, threshold: float) -> Tensor:
    """[B, A, H, W] bool: the decoded box overlaps a ground truth of its image by > threshold."""
    b, a, h, w, _ = pred.shape
    if len(targets) == 0:
        return torch.zeros(b, a, h, w, dtype=torch.bool, device=pred.device)
    boxes = decode_boxes(pred, log_anchors, stride).view(b, -1, 4)  # [B, P, 4]
    # Each image's boxes, padded to the batch's most crowded image with empty boxes (IoU 0), so
    # IoUs are computed only within an image: [B, P, K] instead of [B, P, M].
    image = targets[:, 0].long()
    counts = torch.bincount(image, minlength=b)
    order = torch.argsort(image, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(targets), device=pred.device) - starts[image[order]]
    padded = torch.zeros(b, int(counts.max()), 4, dtype=boxes.dtype, device=pred.device)
    padded[image[order], slot] = targets[order, 2:6].to(boxes.dtype)
    return (box_iou(boxes, padded).amax(-1) > threshold).view(b, a, h, w)
