"""Pascal VOC detection AP at IoU 0.5, computed as the official devkit does (VOCevaldet.m, VOCap.m).

Numpy only, no torch. Per class, over all images:
- detections are sorted by score, highest first (a stable sort: equal scores keep their order);
- each detection is matched to the ground-truth box of its class in its image with the highest
  IoU, difficult boxes included (the first such box on ties);
- IoU >= 0.5: a difficult box makes the detection ignored (neither a true nor a false positive);
  otherwise a box not yet matched makes it a true positive and marks the box matched, and an
  already matched one a false positive (a duplicate), even when another, unmatched box overlaps
  the detection above 0.5 too (COCOeval would take that one instead: the devkit does not);
- IoU < 0.5 (or no box of the class in the image): a false positive;
- recall is over the non-difficult boxes of the class; a class without any has AP -1 (left out
  of the mean), the project's convention for a class that cannot be scored.

Two APs from one precision/recall curve:
- VOC07, 11 points: the mean over t = 0, 0.1, ..., 1 of the highest precision at recall >= t (0
  where recall never reaches t). Recall >= t is tested exactly, as tp * 10 >= k * npos in
  integers: the float thresholds of `0:0.1:1` or `np.arange(0, 1.1, 0.1)` (0.30000000000000004)
  would miss a recall of exactly 3/10.
- VOC2010+ area: precision made monotone (each point the max of those at higher recall), summed
  over the recall steps (the area under that envelope).
Ignored detections are dropped before the curve: they would only repeat the previous point.

The "+1" pixel convention: the devkit measures integer 1-based inclusive boxes, a box from xmin to
xmax being xmax - xmin + 1 wide, and intersections likewise + 1. The project reads a VOC box as
continuous 0-based xyxy (xmin - 1, ymin - 1, xmax, ymax) (trainer.data.voc), whose width xmax -
(xmin - 1) and intersection min(xmax) - max(xmin - 1) are exactly the devkit's; a detection written
out for the devkit is likewise (x1 + 1, y1 + 1, x2, y2). So the plain continuous IoU used here is
the devkit's IoU on the original integer boxes, with no +1 anywhere.

COCO crowd boxes, which the devkit does not know, are treated as difficult ones (ignored).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IOU_THRESHOLD = 0.5


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Continuous IoU of one xyxy box with [n, 4] boxes -> [n] (0 where the union is empty)."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    union = _area(box) + _area(boxes) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_detections(
    det_images: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: dict[int, np.ndarray],
    gt_difficult: dict[int, np.ndarray],
    iou_threshold: float = IOU_THRESHOLD,
) -> np.ndarray:
    """One class's detections -> [m] outcome in score order: 1 true positive, 0 false, -1 ignored.

    det_images [m] image ids, det_boxes [m, 4] xyxy, det_scores [m]; gt_boxes / gt_difficult: image
    id -> that image's boxes of the class [n, 4] and difficult flags [n] (absent: no box)."""
    order = np.argsort(-np.asarray(det_scores, dtype=np.float64), kind="stable")
    matched = {img: np.zeros(len(b), dtype=bool) for img, b in gt_boxes.items()}
    outcome = np.zeros(len(order), dtype=np.int8)
    for rank, d in enumerate(order):
        img = int(det_images[d])
        boxes = gt_boxes.get(img)
        if boxes is None or len(boxes) == 0:
            continue  # false positive
        ious = _iou(np.asarray(det_boxes[d], dtype=np.float64), boxes)
        best = int(np.argmax(ious))  # the first of equal IoUs, as the devkit's strict `>`
        if ious[best] < iou_threshold:
            continue
        if gt_difficult[img][best]:
            outcome[rank] = -1
        elif not matched[img][best]:
            matched[img][best] = True
            outcome[rank] = 1
    return outcome


def voc07_ap(tp_cumulative: np.ndarray, precision: np.ndarray, npos: int) -> float:
    """11-point AP: the mean over t = k / 10 of the max precision at recall >= t (exact test)."""
    total = 0.0
    for k in range(11):
        reached = tp_cumulative * 10 >= k * npos
        total += float(precision[reached].max()) if reached.any() else 0.0
    return total / 11


def area_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2010+ AP: the area under the monotone envelope of precision, summed at recall changes."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def class_ap(outcome: np.ndarray, npos: int) -> tuple[float, float]:
    """(VOC07 11-point AP, area AP) of one class from `match_detections`' outcomes; -1s without
    a non-difficult box (npos 0)."""
    if npos == 0:
        return -1.0, -1.0
    scored = outcome[outcome >= 0]
    tp = np.cumsum(scored == 1)
    fp = np.cumsum(scored == 0)
    precision = tp / np.maximum(tp + fp, 1)
    return voc07_ap(tp, precision, npos), area_ap(tp / npos, precision)


def _check_labels(labels: np.ndarray, num_classes: int, field: str) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = sorted({int(v) for v in labels if not 0 <= v < num_classes})
        raise ValueError(f"{field} holds class ids outside 0..{num_classes - 1}: {bad}")


def voc_eval(
    ground_truth: Sequence[dict], detections: Sequence[dict], num_classes: int
) -> dict[str, list[float]]:
    """Per-class VOC AP50s over a set of images: {"voc07": [K], "area": [K]}, -1 for a class
    without a non-difficult box.

    ground_truth  per image: {"boxes": [n, 4] xyxy, "labels": [n], "difficult": [n] bool
                              (optional), "iscrowd": [n] bool (optional, treated as difficult)}
    detections    per image: {"boxes": [m, 4] xyxy, "scores": [m], "labels": [m]}
    """
    if len(ground_truth) != len(detections):
        raise ValueError(
            f"ground_truth has {len(ground_truth)} images and detections {len(detections)}: they must match"
        )
    gt_boxes: list[dict[int, np.ndarray]] = [{} for _ in range(num_classes)]
    gt_difficult: list[dict[int, np.ndarray]] = [{} for _ in range(num_classes)]
    npos = [0] * num_classes
    dets: list[list[tuple[int, np.ndarray, np.ndarray]]] = [[] for _ in range(num_classes)]
    for img, (gt, det) in enumerate(zip(ground_truth, detections, strict=True)):
        labels = np.asarray(gt["labels"], dtype=np.int64).reshape(-1)
        boxes = np.asarray(gt["boxes"], dtype=np.float64).reshape(-1, 4)
        n = len(labels)
        ignored = np.asarray(gt.get("difficult", np.zeros(n)), dtype=bool).reshape(-1)
        ignored = ignored | np.asarray(gt.get("iscrowd", np.zeros(n)), dtype=bool).reshape(-1)
        _check_labels(labels, num_classes, f"ground_truth[{img}]['labels']")
        for c in np.unique(labels):
            of_c = labels == c
            gt_boxes[c][img], gt_difficult[c][img] = boxes[of_c], ignored[of_c]
            npos[c] += int((~ignored[of_c]).sum())
        d_labels = np.asarray(det["labels"], dtype=np.int64).reshape(-1)
        d_boxes = np.asarray(det["boxes"], dtype=np.float64).reshape(-1, 4)
        d_scores = np.asarray(det["scores"], dtype=np.float64).reshape(-1)
        _check_labels(d_labels, num_classes, f"detections[{img}]['labels']")
        for c in np.unique(d_labels):
            of_c = d_labels == c
            dets[c].append((img, d_boxes[of_c], d_scores[of_c]))
    out: dict[str, list[float]] = {"voc07": [], "area": []}
    for c in range(num_classes):
        images = np.concatenate([np.full(len(s), img) for img, _, s in dets[c]] or [np.zeros(0, int)])
        boxes = np.concatenate([b for _, b, _ in dets[c]] or [np.zeros((0, 4))])
        scores = np.concatenate([s for _, _, s in dets[c]] or [np.zeros(0)])
        outcome = match_detections(images, boxes, scores, gt_boxes[c], gt_difficult[c])
        ap07, ap = class_ap(outcome, npos[c])
        out["voc07"].append(ap07)
        out["area"].append(ap)
    return out


def mean_ap(per_class: Sequence[float]) -> float:
    """The mean over the classes that could be scored (AP > -1); -1 if none could."""
    valid = [v for v in per_class if v > -1]
    return float(np.mean(valid)) if valid else -1.0
