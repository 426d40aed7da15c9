"""From raw predictions to boxes: decoding with the anchors, then confidence filtering and NMS."""

from __future__ import annotations

import torch
from torch import Tensor

from trainer.model.boxes import batched_nms, cxcywh_to_xyxy


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
    """Detections per image: dicts of boxes [n, 4] xyxy px, scores [n], labels [n] long.

    A box's score is objectness x its best class probability (YOLOv2); boxes are clipped to the
    image, NMS runs per class.
    """
    b = pred.shape[0]
    height, width = pred.shape[2] * stride, pred.shape[3] * stride
    upper = torch.tensor([width, height, width, height], dtype=pred.dtype, device=pred.device)
    boxes = decode_boxes(pred, log_anchors, stride).view(b, -1, 4)
    cls_prob, labels = pred[..., 5:].softmax(-1).max(-1)
    scores = (pred[..., 4].sigmoid() * cls_prob).view(b, -1)
    labels = labels.view(b, -1)
    out = []
    for i in range(b):
        keep = scores[i] > conf_threshold
        bx, sc, lb = boxes[i][keep], scores[i][keep], labels[i][keep]
        if len(sc) > pre_nms_top:
            top = sc.topk(pre_nms_top).indices
            bx, sc, lb = bx[top], sc[top], lb[top]
        bx = bx.clamp(min=torch.zeros_like(upper), max=upper)  # inside the image
        kept = batched_nms(bx, sc, lb, nms_iou)[:max_detections]
        out.append({"boxes": bx[kept], "scores": sc[kept], "labels": lb[kept]})
    return out
