import numpy as np
import pytest

from trainer.evaluate import coco_eval

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
