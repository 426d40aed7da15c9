"""Greedy non-maximum suppression without a host-device synchronisation per box.

Greedy NMS keeps the highest-scoring box, drops every box overlapping it by IoU > threshold, and
repeats with the next box left. A loop over the boxes asking "is box i still in?" waits for the
device once per box (a CUDA sync each), which dominated postprocessing. Here instead, with the boxes
sorted by score and `over[j, i]` "j outscores i and overlaps it above the threshold" (same label
only, for per-class NMS; never across images):

    keep[i] = no j with over[j, i] and keep[j]

is solved by iterating it from "all kept" until nothing changes. The greedy keeps are its only
solution (keep[i] depends on earlier boxes only), and after t rounds the first t boxes are final,
so it ends; in practice after a few rounds (as many as the longest chain of boxes that would
suppress each other in turn), each one batched matrix-vector product and one sync for a group of
images (as many as fit in 32 MiB of overlaps: 8 at 1000 candidates each).

When torchvision is importable, `torchvision.ops.batched_nms` (its compiled kernels) does the
work instead, once for a whole batch (image and label together make its groups). It is optional:
the trainer image does not install it, and the two give the same keeps (tests/trainer/model/
test_nms.py checks both against a plain greedy reference; IoUs within rounding of the threshold
aside).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

# Memory bounds, in [N, N] matrix elements (4 bytes each): the overlaps of a group of images solved
# together (32 MiB), and of the images whose IoU is computed at once (its 3 temporaries, 24 MiB).
# A batch of 32 with 1000 candidates each takes 4 groups: 4 x (a few rounds) syncs in all.
_GROUP_ELEMENTS = 8_000_000
_CHUNK_ELEMENTS = 2_000_000


@functools.cache
def _torchvision_batched_nms():
    try:
        from torchvision.ops import batched_nms
    except ImportError:  # optional; any failure to import is "not there"
        return None
    return batched_nms


def _overlaps(
    boxes_xyxy: Tensor, labels: Tensor, iou_threshold: float, out: Tensor, eps: float = 1e-9
) -> None:
    """[B, N, 4], [B, N] -> `out` [B, N, N] float 0/1: box j overlaps box i above the threshold,
    same label, j < i (the lower triangle only). The IoU is box_iou's, operation for operation (the
    same floats), computed in `out` itself; float for `_greedy_keep`'s matrix products."""
    x1, y1, x2, y2 = (c.unsqueeze(-1) for c in boxes_xyxy.unbind(-1))  # [B, N, 1] each
    area = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    inter = torch.minimum(x2, x2.mT, out=out).sub_(torch.maximum(x1, x1.mT)).clamp_(min=0)
    inter.mul_(torch.minimum(y2, y2.mT).sub_(torch.maximum(y1, y1.mT)).clamp_(min=0))
    union = (area + area.mT).sub_(inter).add_(eps)
    over = inter.div_(union).gt_(iou_threshold)  # in place: a float 0/1 matrix
    over.mul_(labels.unsqueeze(-1) == labels.unsqueeze(-2)).tril_(-1)


def _greedy_keep(over: Tensor, valid: Tensor) -> Tensor:
    """Greedy NMS's keeps of score-sorted boxes from `_overlaps`' [B, N, N] matrix and the [B, N]
    bool candidates -> [B, N] bool. A round is one batched matrix-vector product."""
    keep = valid.clone()
    for _ in range(valid.shape[-1] + 1):  # converges after at most N + 1 rounds
        suppressed = torch.bmm(over, keep.to(over.dtype).unsqueeze(-1)).squeeze(-1) > 0.5
        new = valid & ~suppressed
        if torch.equal(new, keep):  # the one sync of a round
            break
        keep = new
    return keep


def batched_nms_mask(
    boxes_xyxy: Tensor, scores: Tensor, labels: Tensor, valid: Tensor, iou_threshold: float
) -> Tensor:
    """Per-image, per-label NMS over padded candidates: [B, N, 4], [B, N], [B, N], [B, N] bool ->
    [B, N] bool, the candidates kept. Invalid entries are never kept and never suppress."""
    b, n = scores.shape
    if b * n == 0:
        return valid.clone()
    tv_nms = _torchvision_batched_nms()
    if tv_nms is not None:
        flat = valid.reshape(-1).nonzero().squeeze(1)
        groups = (flat // n) * (int(labels.max()) + 1) + labels.reshape(-1)[flat]
        kept = tv_nms(boxes_xyxy.reshape(-1, 4)[flat], scores.reshape(-1)[flat], groups, iou_threshold)
        keep = torch.zeros(b * n, dtype=torch.bool, device=valid.device)
        keep[flat[kept]] = True
        return keep.view(b, n)
    # sorted by score (stable: equal scores keep their order), invalid ones last
    order = torch.where(valid, scores, torch.finfo(scores.dtype).min).argsort(
        dim=1, descending=True, stable=True
    )
    sorted_boxes = boxes_xyxy.gather(1, order.unsqueeze(-1).expand(-1, -1, 4))
    sorted_labels, sorted_valid = labels.gather(1, order), valid.gather(1, order)
    group = max(1, _GROUP_ELEMENTS // (n * n))
    chunk = max(1, min(group, _CHUNK_ELEMENTS // (n * n)))
    kept_sorted = torch.empty_like(valid)
    over = torch.empty(min(group, b), n, n, dtype=boxes_xyxy.dtype, device=boxes_xyxy.device)
    for g in range(0, b, group):
        size = min(group, b - g)
        for i in range(0, size, chunk):
            end = min(i + chunk, size)
            images = slice(g + i, g + end)
            _overlaps(sorted_boxes[images], sorted_labels[images], iou_threshold, over[i:end])
        kept_sorted[g : g + size] = _greedy_keep(over[:size], sorted_valid[g : g + size])
    return torch.zeros_like(valid).scatter(1, order, kept_sorted)


def batched_nms(boxes_xyxy: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each label only: [N, 4], [N], [N] -> indices kept, highest score first."""
    if scores.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    valid = torch.ones(1, len(scores), dtype=torch.bool, device=scores.device)
    keep = batched_nms_mask(boxes_xyxy[None], scores[None], labels[None], valid, iou_threshold)[0]
    kept = keep.nonzero().squeeze(1)
    return kept[scores[kept].argsort(descending=True, stable=True)]


def nms(boxes_xyxy: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS over all boxes: [N, 4], [N] -> indices kept, highest score first."""
    return batched_nms(boxes_xyxy, scores, torch.zeros_like(scores, dtype=torch.long), iou_threshold)
