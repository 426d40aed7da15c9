"""Pure, vectorised box math. Function names carry the box format.

Formats (all in the same units, usually pixels):
    xyxy    (x1, y1, x2, y2), corners
    cxcywh  (cx, cy, w, h), centre and size
    xywh    (x, y, w, h), top-left corner and size (COCO's `bbox`)
    wh      (w, h), a shape with no position
Every function accepts any leading batch shape `[..., 4]` unless it says otherwise. Non-maximum
suppression is in trainer.model.nms.
"""

from __future__ import annotations

import torch
from torch import Tensor


def xyxy_to_cxcywh(b: Tensor) -> Tensor:
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def xywh_to_xyxy(b: Tensor) -> Tensor:
    x, y, w, h = b.unbind(-1)
    return torch.stack((x, y, x + w, y + h), dim=-1)


def xyxy_to_xywh(b: Tensor) -> Tensor:
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1)


def box_area(b_xyxy: Tensor) -> Tensor:
    """[..., 4] -> [...]; boxes with negative extent have area 0."""
    return (b_xyxy[..., 2] - b_xyxy[..., 0]).clamp(min=0) * (b_xyxy[..., 3] - b_xyxy[..., 1]).clamp(min=0)


def box_iou(a_xyxy: Tensor, b_xyxy: Tensor, eps: float = 1e-9) -> Tensor:
    """Pairwise IoU: [N, 4] x [M, 4] -> [N, M]. Also batched: [B, N, 4] x [B, M, 4] -> [B, N, M]."""
    a = a_xyxy.unsqueeze(-2)  # [..., N, 1, 4]
    b = b_xyxy.unsqueeze(-3)  # [..., 1, M, 4]
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a_xyxy).unsqueeze(-1) + box_area(b_xyxy).unsqueeze(-2) - inter
    return inter / (union + eps)


def shape_iou(a_wh: Tensor, b_wh: Tensor, eps: float = 1e-9) -> Tensor:
    """IoU of shapes aligned at a common centre: [N, 2] x [M, 2] -> [N, M].

    This is YOLOv2's anchor-matching and k-means similarity: it ignores position.
    """
    a = a_wh.unsqueeze(-2)  # [N, 1, 2]
    b = b_wh.unsqueeze(-3)  # [1, M, 2]
    inter = torch.minimum(a, b).clamp(min=0).prod(-1)
    union = a.prod(-1) + b.prod(-1) - inter
    return inter / (union + eps)


def wh_ratio_metric(a_wh: Tensor, b_wh: Tensor) -> Tensor:
    """YOLOv5's shape match: max over w and h of max(r, 1/r), r = a / b. [N, 2] x [M, 2] -> [N, M].

    1 is a perfect match; a box "can be matched" by an anchor when this is under 4.
    """
    r = a_wh.unsqueeze(-2) / b_wh.unsqueeze(-3)
    return torch.maximum(r, 1 / r).amax(-1)
