import numpy as np
import pytest

from trainer.train.evaluation import coco_eval

GT = [
    {"boxes": np.array([[10, 10, 50, 50], [60, 60, 90, 100]], float), "labels": np.array([0, 1])},
    {"boxes": np.array([[5, 5, 25, 45]], float), "labels": np.array([0])},
]
SIZES = [(128, 128), (128, 128)]


def test_perfect_predictions_score_one():
    dets = [{"boxes": g["boxes"], "scores": np.ones(len(g["labels"])), "labels": g["labels"]} for g in GT]
    m = coco_eval(GT, dets, num_classes=2, image_sizes=SIZES)
    assert (
        m["ap"] == pytest.approx(1.0) and m["ap50"] == pytest.approx(1.0) and m["ap75"] == pytest.approx(1.0)
    )
    assert m["per_class_ap50"] == [pytest.approx(1.0), pytest.approx(1.0)]


def test_hand_made_case():
    # class 0 has two boxes; only one is found, with the highest score: recall 0.5 at precision 1,
    # then a false positive. COCO interpolates precision at 101 recall points: 51 of them (0 to 0.5)
    # have precision 1, the rest 0 -> AP50(class 0) = 51 / 101. Class 1 is found perfectly.
    found = np.array([[10, 10, 50, 50], [60, 60, 90, 100]], float)
    wrong = np.array([[100, 100, 120, 120]], float)
    dets = [
        {"boxes": found, "scores": np.array([0.9, 0.8]), "labels": np.array([0, 1])},
        {"boxes": wrong, "scores": np.array([0.5]), "labels": np.array([0])},
    ]
    m = coco_eval(GT, dets, num_classes=2, image_sizes=SIZES)
    assert m["per_class_ap50"][0] == pytest.approx(51 / 101)
    assert m["per_class_ap50"][1] == pytest.approx(1.0)
    assert m["ap50"] == pytest.approx((51 / 101 + 1) / 2)


def test_no_detections_and_no_ground_truth():
    none = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)}] * 2
    assert coco_eval(GT, none, 2, SIZES)["ap50"] == 0.0
    empty_gt = [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}] * 2
    assert coco_eval(empty_gt, none, 2, SIZES)["ap50"] == -1.0


def _one_class_case(**gt_flags):
    gt = [{"boxes": np.array([[10, 10, 50, 50], [60, 60, 90, 100]], float), "labels": np.array([0, 0])}]
    gt[0].update(gt_flags)
    return gt


def test_voc07_eleven_point_and_coco_101_point_on_a_known_case():
    # Two boxes; detections by score: hit, false positive, hit. Precision/recall after each:
    # (1, 0.5), (0.5, 0.5), (2/3, 1). Interpolated precision is 1 up to recall 0.5, then 2/3.
    # VOC07: recall points 0..0.5 (6 of 11) at 1, 0.6..1 (5) at 2/3. COCO: 51 of 101, then 50.
    dets = [
        {
            "boxes": np.array([[10, 10, 50, 50], [100, 5, 120, 30], [60, 60, 90, 100]], float),
            "scores": np.array([0.9, 0.8, 0.7]),
            "labels": np.array([0, 0, 0]),
        }
    ]
    m = coco_eval(_one_class_case(), dets, num_classes=1, image_sizes=[(128, 128)])
    assert m["voc07_ap50"] == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert m["ap50"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert m["per_class_voc07_ap50"] == [pytest.approx((6 + 5 * 2 / 3) / 11)]


def test_perfect_predictions_score_one_in_voc07_too():
    dets = [{"boxes": g["boxes"], "scores": np.ones(len(g["labels"])), "labels": g["labels"]} for g in GT]
    m = coco_eval(GT, dets, num_classes=2, image_sizes=SIZES)
    assert m["voc07_ap50"] == pytest.approx(1.0)
    assert m["per_class_ap"] == [pytest.approx(1.0), pytest.approx(1.0)]


@pytest.mark.parametrize("flag", ["difficult", "iscrowd"])
def test_ignored_boxes_are_neither_missed_nor_false_positives(flag):
    # The second box is ignored: finding only the first is perfect, and a detection on the
    # ignored box (even the highest-scoring one) costs nothing.
    dets = [
        {
            "boxes": np.array([[60, 60, 90, 100], [10, 10, 50, 50]], float),
            "scores": np.array([0.95, 0.9]),
            "labels": np.array([0, 0]),
        }
    ]
    first_only = [dict(dets[0], boxes=dets[0]["boxes"][1:], scores=[0.9], labels=[0])]
    plain = coco_eval(_one_class_case(), first_only, num_classes=1, image_sizes=[(128, 128)])
    assert plain["ap50"] == pytest.approx(51 / 101)  # without the flag, the second box is a miss
    m = coco_eval(_one_class_case(**{flag: np.array([0, 1])}), dets, num_classes=1, image_sizes=[(128, 128)])
    assert m["ap50"] == pytest.approx(1.0) and m["voc07_ap50"] == pytest.approx(1.0)
