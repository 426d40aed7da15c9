"""From raw predictions to boxes: decoding with the anchors, then per-class scores and NMS.

Scores as darknet's YOLOv2 region layer keeps them: every box has a score per class, objectness x
P(class | object), and each (box, class) pair above the confidence threshold is a candidate, so one
box can be detected as several classes (a dog that may be a cat). The `pre_nms_top` best pairs of
an image go through NMS, per class (trainer.model.nms: no host-device sync per box), and the
`max_detections` best survivors are the image's detections. The whole batch is processed at once.
"""

from __future__ import annotations

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


@torch.no_grad()
def postprocess(
    pred: Tensor,
    log_anchors: Tensor,
    stride: int,
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
    b, num_classes = pred.shape[0], pred.shape[-1] - 5
    height, width = pred.shape[2] * stride, pred.shape[3] * stride
    upper = torch.tensor([width, height, width, height], dtype=pred.dtype, device=pred.device)
    boxes = decode_boxes(pred, log_anchors, stride).view(b, -1, 4)
    boxes = boxes.clamp(min=torch.zeros_like(upper), max=upper)  # inside the image
    # [B, boxes x classes]: pair p * C + c is box p's score for class c
    scores = (pred[..., 4:5].sigmoid() * pred[..., 5:].softmax(-1)).view(b, -1)
    top, pair = scores.topk(min(pre_nms_top, scores.shape[1]), dim=1)  # sorted, best first
    labels = pair % num_classes
    cand = boxes.gather(1, (pair // num_classes).unsqueeze(-1).expand(-1, -1, 4))
    keep = batched_nms_mask(cand, top, labels, top > conf_threshold, nms_iou)
    keep &= keep.cumsum(1) <= max_detections  # the best max_detections of each image
    counts = keep.sum(1).tolist()  # a sync for the batch, and one for the indices below
    kept = keep.view(-1).nonzero().squeeze(1)
    per_image = (t.flatten(0, 1)[kept].split(counts) for t in (cand, top, labels))
    return [{"boxes": bx, "scores": sc, "labels": lb} for bx, sc, lb in zip(*per_image, strict=True)]
