"""Detection accuracy, computed by pycocotools' COCOeval (never a hand-written AP).

Ground truth and detections are xyxy pixels in the same image coordinates. Returns COCO's
AP@[.5:.95], AP50, AP75 and per-class AP50 (all in [0, 1]; -1 where a class has no ground truth).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def _xyxy_to_xywh(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def coco_eval(
    ground_truth: Sequence[dict],
    detections: Sequence[dict],
    num_classes: int,
    image_sizes: Sequence[tuple[int, int]],
) -> dict:
    """COCO-style metrics over a set of images.

    ground_truth  per image: {"boxes": [n, 4] xyxy px, "labels": [n] class ids, "iscrowd": [n] (optional)}
    detections    per image: {"boxes": [m, 4] xyxy px, "scores": [m], "labels": [m]}
    image_sizes   per image: (height, width)
    """
    images, annotations, results = [], [], []
    for img_id, (gt, det, (height, width)) in enumerate(
        zip(ground_truth, detections, image_sizes, strict=True)
    ):
        images.append({"id": img_id, "height": int(height), "width": int(width)})
        crowd = np.asarray(gt.get("iscrowd", np.zeros(len(gt["labels"]))), dtype=int).reshape(-1)
        for box, label, is_crowd in zip(
            _xyxy_to_xywh(gt["boxes"]), np.asarray(gt["labels"]).reshape(-1), crowd, strict=True
        ):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": img_id,
                    "category_id": int(label),
                    "bbox": box.tolist(),
                    "area": float(box[2] * box[3]),
                    "iscrowd": int(is_crowd),
                }
            )
        det_boxes = _xyxy_to_xywh(det["boxes"])
        for box, score, label in zip(
            det_boxes,
            np.asarray(det["scores"]).reshape(-1),
            np.asarray(det["labels"]).reshape(-1),
            strict=True,
        ):
            results.append(
                {"image_id": img_id, "category_id": int(label), "bbox": box.tolist(), "score": float(score)}
            )

    empty = {"ap": 0.0, "ap50": 0.0, "ap75": 0.0, "per_class_ap50": [-1.0] * num_classes}
    if not annotations:
        return empty | {"ap": -1.0, "ap50": -1.0, "ap75": -1.0}
    if not results:
        return empty

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": c, "name": str(c)} for c in range(num_classes)],
        }
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # precision: [T iou thresholds, R recall points, K classes, area ranges, max dets]; area "all",
    # 100 detections; IoU threshold index 0 is 0.5.
    precision = ev.eval["precision"][0, :, :, 0, -1]
    per_class = [
        float(precision[:, k][precision[:, k] > -1].mean()) if (precision[:, k] > -1).any() else -1.0
        for k in range(num_classes)
    ]
    return {
        "ap": float(ev.stats[0]),
        "ap50": float(ev.stats[1]),
        "ap75": float(ev.stats[2]),
        "per_class_ap50": per_class,
    }
