"""The devkit's VOC AP on hand-computed cases (each with its precision/recall arithmetic)."""

import numpy as np
import pytest

from trainer.train.evaluation import coco_eval
from trainer.train.voc_eval import area_ap, class_ap, mean_ap, voc_eval

A, B, C = [10, 10, 50, 50], [60, 60, 90, 100], [5, 70, 40, 120]
FAR = [100, 5, 120, 30]  # overlaps none of them


def gt(boxes, labels=None, difficult=None):
    out = {"boxes": np.array(boxes, float).reshape(-1, 4), "labels": np.array(labels or [0] * len(boxes))}
    if difficult is not None:
        out["difficult"] = np.array(difficult, bool)
    return out


def det(boxes, scores, labels=None):
    return {
        "boxes": np.array(boxes, float).reshape(-1, 4),
        "scores": np.array(scores, float),
        "labels": np.array(labels or [0] * len(boxes)),
    }


def aps(gts, dets, num_classes=1):
    r = voc_eval(gts, dets, num_classes)
    return r["voc07"], r["area"]


def test_perfect_detections_score_one():
    gts = [gt([A, B], [0, 1]), gt([C])]
    dets = [det([A, B], [0.9, 0.8], [0, 1]), det([C], [0.7])]
    assert aps(gts, dets, 2) == ([1.0, 1.0], [1.0, 1.0])


def test_a_duplicate_is_a_false_positive():
    # A hit, a second detection on A (false positive), B hit. After each: tp 1, 1, 2; fp 0, 1, 1;
    # precision 1, 1/2, 2/3; recall 1/2, 1/2, 1.
    # 11-point: t = 0..0.5 (6 points) reach precision 1, t = 0.6..1 (5 points) only 2/3.
    # Area: envelope 1 up to recall 1/2, then 2/3: 1/2 * 1 + 1/2 * 2/3 = 5/6.
    (ap07,), (ap,) = aps([gt([A, B])], [det([A, A, B], [0.9, 0.8, 0.7])])
    assert ap07 == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert ap == pytest.approx(5 / 6)


def test_two_detections_on_one_difficult_box_are_both_ignored():
    # Both detections on the difficult B are neither hits nor false positives, the one on A is a
    # hit: AP 1. (The former COCOeval-based VOC07 AP let the first match B and made the second a
    # false positive: 0.5.)
    gts = [gt([A, B], difficult=[0, 1])]
    (ap07,), (ap,) = aps(gts, [det([B, B, A], [0.95, 0.9, 0.8])])
    assert ap07 == 1.0 and ap == 1.0


def test_a_detection_of_the_wrong_class_is_a_false_positive_of_its_class_only():
    # Class 0: A found, AP 1. Class 1 (box B): a class-1 detection on A first (false positive,
    # precision 0 at recall 0), then B (precision 1/2 at recall 1): every recall point's best
    # precision is 1/2, and the envelope is 1/2 over the whole recall range.
    gts = [gt([A, B], [0, 1])]
    ap07, ap = aps(gts, [det([A, A, B], [0.9, 0.8, 0.6], [1, 0, 1])], num_classes=2)
    assert ap07 == [1.0, pytest.approx(0.5)] and ap == [1.0, pytest.approx(0.5)]


def test_a_high_scoring_false_positive_before_the_hits():
    # Three boxes; detections by score: FP, A, B, FP, C.
    #   tp        0    1    2    2    3
    #   fp        1    1    1    2    2
    #   precision 0    1/2  2/3  1/2  3/5
    #   recall    0    1/3  2/3  2/3  1
    # 11-point: t = 0 -> max of all = 2/3; t = 0.1..0.3 (recall >= 1/3) -> 2/3; t = 0.4..0.6
    # (recall >= 2/3) -> 2/3; t = 0.7..1 (4 points, recall 1 only) -> 3/5.
    #   (7 * 2/3 + 4 * 3/5) / 11 = (70/15 + 36/15) / 11 = 106/165
    # Area: the envelope is 2/3 up to recall 2/3, then 3/5: 1/3 * 2/3 + 1/3 * 2/3 + 1/3 * 3/5
    #   = 4/9 + 1/5 = 29/45
    gts = [gt([A, B, C])]
    (ap07,), (ap,) = aps(gts, [det([FAR, A, B, FAR, C], [0.95, 0.9, 0.8, 0.7, 0.6])])
    assert ap07 == pytest.approx(106 / 165)
    assert ap == pytest.approx(29 / 45)


def test_the_best_box_already_matched_makes_a_false_positive_though_another_overlaps():
    # P and Q overlap (IoU 90/110). The first detection is P itself; the second overlaps P best
    # (IoU 98/102) and Q too (92/108 > 0.5). The devkit takes the best box, P, already matched:
    # a false positive. Precision 1, 1/2 at recall 1/2, 1/2: 11-point 6/11, area 1/2.
    # COCOeval matches the second to Q, still free: AP50 1.
    p, q, second = [0, 0, 10, 10], [1, 0, 11, 10], [0.2, 0, 10.2, 10]
    gts, dets = [gt([p, q])], [det([p, second], [0.9, 0.8])]
    (ap07,), (ap,) = aps(gts, dets)
    assert ap07 == pytest.approx(6 / 11) and ap == pytest.approx(0.5)
    assert coco_eval(gts, dets, 1, [(20, 20)])["ap50"] == pytest.approx(1.0)


def test_equal_scores_keep_their_order():
    # One box; a false positive and a hit with the same score, in that order: precision 0 then
    # 1/2 at recall 1 -> 1/2 (the hit first would give 1).
    (ap07,), (ap,) = aps([gt([A])], [det([FAR, A], [0.5, 0.5])])
    assert ap07 == pytest.approx(0.5) and ap == pytest.approx(0.5)


def test_a_recall_of_exactly_three_tenths_reaches_the_point_three():
    # Ten boxes, three hits then a false positive: recall 0.1, 0.2, 0.3, 0.3 at precision 1, 1, 1,
    # 3/4. The points t = 0, 0.1, 0.2, 0.3 reach precision 1: 4/11 (a float threshold 0.1 * 3 =
    # 0.30000000000000004 would miss t = 0.3 and give 3/11). Area: 0.3 * 1.
    boxes = [[20 * i, 0, 20 * i + 10, 10] for i in range(10)]
    (ap07,), (ap,) = aps([gt(boxes)], [det([*boxes[:3], [0, 50, 5, 55]], [0.9, 0.8, 0.7, 0.6])])
    assert ap07 == pytest.approx(4 / 11) and ap == pytest.approx(0.3)


def test_a_class_with_only_difficult_boxes_is_left_out():
    gts = [gt([A, B], [0, 1], difficult=[0, 1])]
    ap07, ap = aps(gts, [det([A, B], [0.9, 0.8], [0, 1])], num_classes=3)
    assert ap07 == [1.0, -1.0, -1.0] and ap == [1.0, -1.0, -1.0]
    assert mean_ap(ap07) == 1.0 and mean_ap([-1.0, -1.0]) == -1.0


def test_no_detections():
    empty = det(np.zeros((0, 4)), [])
    assert aps([gt([A], [1])], [empty], num_classes=2) == ([-1.0, 0.0], [-1.0, 0.0])
    assert class_ap(np.zeros(0, np.int8), npos=0) == (-1.0, -1.0)
    assert area_ap(np.zeros(0), np.zeros(0)) == 0.0


def test_crowd_boxes_are_ignored_like_difficult_ones():
    g = gt([A, B]) | {"iscrowd": np.array([0, 1])}
    assert aps([g], [det([B, A], [0.9, 0.8])]) == ([1.0], [1.0])


def test_mismatched_inputs_name_the_field():
    with pytest.raises(ValueError, match=r"detections\[0\]\['labels'\]"):
        voc_eval([gt([A])], [det([A], [0.9], [3])], num_classes=2)
    with pytest.raises(ValueError, match="ground_truth has 1 images"):
        voc_eval([gt([A])], [], num_classes=1)


def test_coco_eval_reports_the_devkit_aps():
    gts, dets = [gt([A, B])], [det([A, A, B], [0.9, 0.8, 0.7])]
    m = coco_eval(gts, dets, 1, [(128, 128)])
    assert m["voc07_ap50"] == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert m["voc_ap50"] == pytest.approx(5 / 6)
    assert m["per_class_voc07_ap50"] == [pytest.approx((6 + 5 * 2 / 3) / 11)]
    assert m["per_class_voc_ap50"] == [pytest.approx(5 / 6)]
    none = coco_eval(gts, [det(np.zeros((0, 4)), [])], 2, [(128, 128)])
    assert none["voc_ap50"] == 0.0 and none["per_class_voc_ap50"] == [0.0, -1.0]
    assert none["ap50"] == 0.0


def test_the_continuous_iou_of_converted_boxes_is_the_devkits_plus_one_iou():
    # The devkit on 1-based inclusive integer boxes: widths and intersections + 1. The project's
    # boxes are (xmin - 1, ymin - 1, xmax, ymax): the same IoU with no +1 (trainer.data.voc).
    from trainer.train.voc_eval import _iou

    rng = np.random.default_rng(0)
    xy = rng.integers(1, 50, (200, 2))
    boxes = np.concatenate([xy, xy + rng.integers(0, 30, (200, 2))], axis=1).astype(float)
    one = boxes[0]
    iw = np.clip(np.minimum(one[2], boxes[:, 2]) - np.maximum(one[0], boxes[:, 0]) + 1, 0, None)
    ih = np.clip(np.minimum(one[3], boxes[:, 3]) - np.maximum(one[1], boxes[:, 1]) + 1, 0, None)
    size = lambda b: (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)  # noqa: E731
    devkit = iw * ih / (size(one) + size(boxes) - iw * ih)
    converted = boxes - [1, 1, 0, 0]
    np.testing.assert_allclose(_iou(converted[0], converted), devkit, rtol=1e-12)
