"""From raw predictions to boxes: decoding with the anchors, then per-class scores and NMS.

Scores as darknet's YOLOv2 region layer keeps them: every box has a score per class, objectness x
P(class | object), and each (box, class) pair above the confidence threshold is a candidate, so one
box can be detected as several classes (a dog that may be a cat). The `pre_nms_top` best pairs of
an image go through NMS, per class (trainer.model.nms: no host-device sync per box), and the
`max_detections` best survivors are the image's detections. The whole batch is processed at once.
With several levels (model.levels) every level's boxes are candidates together, as in YOLOv3.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from trainer.model.boxes import cxcywh_to_xyxy
from trainer.model.nms import batched_nms_mask


def decode_boxes(pred: Tensor, log_anchors: Tensor, stride: int) -> Tensor:
    """[B, A, H, W, 5 + C] raw, [A, 2] log px -> [B, A, H, W, 4] xyxy pixels at the input size.

    bx = (cx + sigmoid(tx)) * stride, bw = a_w * exp(tw) (YOLOv2); exp is clamped against overflow.
    """
    _, a, h, w, _ = pred.shape
    gy, gx = torch.meshgrid(
        torch.arange(h, device=pred.device), torch.arange(w, device=pred.device), indexing="ij"
    )
    cx = (gx + pred[..., 0].sigmoid()) * stride
    cy = (gy + pred[..., 1].sigmoid()) * stride
    log_wh = (pred[..., 2:4] + log_anchors.view(1, a, 1, 1, 2)).clamp(max=12.0)
    wh = log_wh.exp()
    return cxcywh_to_xyxy(torch.stack([cx, cy, wh[..., 0], wh[..., 1]], dim=-1))


def decode_levels(
    pred: Tensor | Sequence[Tensor], log_anchors: Tensor, stride: int | Sequence[int]
) -> tuple[Tensor, Tensor]:
    """All levels' boxes and raw outputs, level after level: ([B, P, 4] xyxy px, [B, P, 5 + C]).

    `pred` is one level's [B, A, H, W, 5 + C] or a sequence of them (finest first), `stride` its
    stride or theirs, `log_anchors` [L * A, 2] with level l's anchors in rows l*A .. (l+1)*A - 1.
    """
    preds = [pred] if isinstance(pred, Tensor) else list(pred)
    strides = [stride] if isinstance(stride, int) else list(stride)
    per = log_anchors.shape[0] // len(preds)
    boxes, raw = [], []
    for level, (p, s) in enumerate(zip(preds, strides, strict=True)):
        boxes.append(decode_boxes(p, log_anchors[level * per : (level + 1) * per], s).flatten(1, 3))
        raw.append(p.flatten(1, 3))
    return torch.cat(boxes, 1), torch.cat(raw, 1)


@torch.no_grad()
def postprocess(
    pred: Tensor | Sequence[Tensor],
    log_anchors: Tensor,
    stride: int | Sequence[int],
    conf_threshold: float = 0.01,
    nms_iou: float = 0.45,
    max_detections: int = 100,
    pre_nms_top: int = 1000,
) -> list[dict[str, Tensor]]:
    """Detections per image: dicts of boxes [n, 4] xyxy px, scores [n], labels [n] long, highest
    score first.

    Each (box, class) pair with objectness x P(class) > `conf_threshold` is a candidate (the module
    docstring); boxes are clipped to the image, NMS runs per class over an image's `pre_nms_top`
    best pairs, and the `max_detections` best are kept.
    """
    first = pred if isinstance(pred, Tensor) else pred[0]
    first_stride = stride if isinstance(stride, int) else stride[0]
    b, num_classes = first.shape[0], first.shape[-1] - 5
    height, width = first.shape[2] * first_stride, first.shape[3] * first_stride
    upper = torch.tensor([width, height, width, height], dtype=first.dtype, device=first.device)
    boxes, raw = decode_levels(pred, log_anchors, stride)  # [B, P, 4], [B, P, 5 + C]
    boxes = boxes.clamp(min=torch.zeros_like(upper), max=upper)  # inside the image
    # [B, boxes x classes]: pair p * C + c is box p's score for class c
    scores = (raw[..., 4:5].sigmoid() * raw[..., 5:].softmax(-1)).reshape(b, -1)
    top, pair = scores.topk(min(pre_nms_top, scores.shape[1]), dim=1)  # sorted, best first
    labels = pair % num_classes
    cand = boxes.gather(1, (pair // num_classes).unsqueeze(-1).expand(-1, -1, 4))
    keep = batched_nms_mask(cand, top, labels, top > conf_threshold, nms_iou)
    keep &= keep.cumsum(1) <= max_detections  # the best max_detections of each image
    counts = keep.sum(1).tolist()  # a sync for the batch, and one for the indices below
    kept = keep.view(-1).nonzero().squeeze(1)
    per_image = (t.flatten(0, 1)[kept].split(counts) for t in (cand, top, labels))
    return [{"boxes": bx, "scores": sc, "labels": lb} for bx, sc, lb in zip(*per_image, strict=True)]
