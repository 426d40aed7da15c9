"""Detection accuracy as each benchmark defines it: COCO's by pycocotools, VOC's as its devkit.

Ground truth and detections are xyxy pixels in the same image coordinates (the original images',
for real datasets). Returns, all in [0, 1] and -1 where a class (or every class) has no box to
score:
- COCO, by pycocotools' COCOeval (never a hand-written COCO AP): `ap` (AP@[.5:.95]), `ap50`,
  `ap75`, `per_class_ap`, `per_class_ap50`.
- Pascal VOC at IoU 0.5, by trainer.train.voc_eval (the devkit's matching and AP, exactly):
  `voc07_ap50` and `per_class_voc07_ap50` (VOC2007's 11-point AP, the paper's number) and
  `voc_ap50` and `per_class_voc_ap50` (VOC2010+'s area under the precision envelope).

Ignored boxes, as each benchmark defines them:
- COCO crowd boxes (`iscrowd`): COCOeval's own rule. A detection on a crowd region is neither a
  true nor a false positive, and it is matched by intersection over the detection's area. The VOC
  metrics, which know no crowds, ignore them as difficult boxes.
- VOC difficult boxes (`difficult`): a detection matching one is neither a true nor a false
  positive, and a missed one is no miss. For the VOC metrics that is the devkit's rule; COCOeval
  only knows `iscrowd`, so for the COCO metrics `_IgnoringEval` marks difficult boxes ignored
  after COCOeval prepares them (with ordinary IoU matching).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader

from trainer.config import TrainConfig
from trainer.data.batching import collate
from trainer.model.decode import postprocess
from trainer.model.detector import Detector
from trainer.train.batches import loader_workers
from trainer.train.voc_eval import mean_ap, voc_eval


def _xyxy_to_xywh(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


class _IgnoringEval(COCOeval):
    """COCOeval that also ignores boxes marked `difficult` (it only knows `iscrowd` by itself)."""

    def _prepare(self):
        super()._prepare()
        for boxes in self._gts.values():
            for g in boxes:
                g["ignore"] = int(bool(g.get("iscrowd")) or bool(g.get("difficult")))


def _class_means(precision: np.ndarray, num_classes: int) -> list[float]:
    """Per class: mean of the valid precision entries over all but the class axis, -1 if none.
    `precision` is COCOeval's [T, R, K] slice (IoU thresholds, recall points, classes)."""
    out = []
    for k in range(num_classes):
        p = precision[:, :, k]
        out.append(float(p[p > -1].mean()) if (p > -1).any() else -1.0)
    return out


def coco_eval(
    ground_truth: Sequence[dict],
    detections: Sequence[dict],
    num_classes: int,
    image_sizes: Sequence[tuple[int, int]],
) -> dict:
    """COCO and VOC metrics over a set of images (the keys: the module docstring).

    ground_truth  per image: {"boxes": [n, 4] xyxy px, "labels": [n] class ids,
                              "iscrowd": [n] bool (optional), "difficult": [n] bool (optional)}
    detections    per image: {"boxes": [m, 4] xyxy px, "scores": [m], "labels": [m]}
    image_sizes   per image: (height, width)
    """
    images, annotations, results = [], [], []
    for img_id, (gt, det, (height, width)) in enumerate(
        zip(ground_truth, detections, image_sizes, strict=True)
    ):
        images.append({"id": img_id, "height": int(height), "width": int(width)})
        n = len(np.asarray(gt["labels"]).reshape(-1))
        crowd = np.asarray(gt.get("iscrowd", np.zeros(n)), dtype=int).reshape(-1)
        difficult = np.asarray(gt.get("difficult", np.zeros(n)), dtype=int).reshape(-1)
        for box, label, is_crowd, is_difficult in zip(
            _xyxy_to_xywh(gt["boxes"]), np.asarray(gt["labels"]).reshape(-1), crowd, difficult, strict=True
        ):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": img_id,
                    "category_id": int(label),
                    "bbox": box.tolist(),
                    "area": float(box[2] * box[3]),
                    "iscrowd": int(is_crowd),
                    "difficult": int(is_difficult),
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

    per_class_voc = voc_eval(ground_truth, detections, num_classes)
    voc = {
        "voc07_ap50": mean_ap(per_class_voc["voc07"]),
        "voc_ap50": mean_ap(per_class_voc["area"]),
        "per_class_voc07_ap50": per_class_voc["voc07"],
        "per_class_voc_ap50": per_class_voc["area"],
    }
    none = [-1.0] * num_classes
    if not annotations:
        return voc | {"ap": -1.0, "ap50": -1.0, "ap75": -1.0, "per_class_ap": none, "per_class_ap50": none}
    if not results:
        return voc | {"ap": 0.0, "ap50": 0.0, "ap75": 0.0, "per_class_ap": none, "per_class_ap50": none}

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": c, "name": str(c)} for c in range(num_classes)],
        }
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        ev = _IgnoringEval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # precision: [T iou thresholds, R recall points, K classes, area ranges, max dets]; area "all"
    # is index 0, 100 detections the last; IoU threshold index 0 is 0.5.
    precision = ev.eval["precision"][:, :, :, 0, -1]
    return voc | {
        "ap": float(ev.stats[0]),
        "ap50": float(ev.stats[1]),
        "ap75": float(ev.stats[2]),
        "per_class_ap": _class_means(precision, num_classes),
        "per_class_ap50": _class_means(precision[:1], num_classes),
    }


@torch.no_grad()
def evaluate_model(model: Detector, dataset, cfg: TrainConfig, batch_size: int = 32) -> dict:
    """COCO and VOC07 metrics of the model on `dataset` (eval mode: running BN statistics).

    Predictions are mapped back to each original image and scored against its original boxes,
    crowd and difficult ones included as ignored (trainer.train.evaluation)."""
    model.eval()
    device = next(model.parameters()).device
    gts, dets, sizes = [], [], []
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate, **loader_workers(cfg))
    for images, _ in loader:
        pred, log_anchors = model(images.to(device).float() / 255)
        ev = cfg.eval
        found = postprocess(
            pred, log_anchors, model.strides, ev.conf_threshold, ev.nms_iou, ev.max_detections
        )
        for d in found:
            i = len(gts)
            gt = dataset.ground_truth(i)
            sizes.append(gt.pop("size"))
            gts.append(gt)
            det = {k: v.cpu().numpy() for k, v in d.items()}
            det["boxes"] = dataset.to_original(i, det["boxes"])
            dets.append(det)
    return coco_eval(gts, dets, model.num_classes, sizes)
