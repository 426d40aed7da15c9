"""NMS against a plain greedy reference (a loop over boxes), with and without torchvision."""

import pytest
import torch

import trainer.model.nms as nms_module
from tests.trainer.model.test_boxes import random_xyxy
from trainer.model.boxes import box_iou
from trainer.model.nms import batched_nms, batched_nms_mask, nms


@pytest.fixture(params=["matrix", "torchvision"])
def implementation(request, monkeypatch):
    """Each test runs on the sync-free matrix method, and on torchvision's where it is installed."""
    if request.param == "matrix":
        monkeypatch.setattr(nms_module, "_torchvision_batched_nms", lambda: None)
    else:
        pytest.importorskip("torchvision")
    return request.param


def _reference_nms(boxes, scores, labels, thr):
    """Greedy NMS per label, the textbook loop: highest score first, drop what overlaps it."""
    order = scores.argsort(descending=True, stable=True).tolist()
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [
            j
            for j in order
            if labels[j] != labels[i] or box_iou(boxes[i : i + 1], boxes[j : j + 1]).item() <= thr
        ]
    return keep


def test_nms_suppresses_overlaps_keeps_best_first(implementation):
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    scores = torch.tensor([0.8, 0.9, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]


def test_a_suppressed_box_does_not_suppress(implementation):
    # 0 suppresses 1; 1 would suppress 2, but is gone: 2 stays (the chain the rounds resolve).
    boxes = torch.tensor([[0.0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_the_reference(seed, implementation):
    boxes = random_xyxy(60, seed)
    scores = torch.rand(60, generator=torch.Generator().manual_seed(seed + 100))
    zeros = torch.zeros(60, dtype=torch.long)
    assert nms(boxes, scores, 0.4).tolist() == _reference_nms(boxes, scores, zeros, 0.4)


@pytest.mark.parametrize("seed", range(5))
def test_batched_nms_matches_the_reference_per_label(seed, implementation):
    g = torch.Generator().manual_seed(seed)
    boxes = random_xyxy(200, seed)
    scores = torch.rand(200, generator=g)
    labels = torch.randint(0, 4, (200,), generator=g)
    assert batched_nms(boxes, scores, labels, 0.3).tolist() == _reference_nms(boxes, scores, labels, 0.3)


def test_nms_empty_and_batched_by_label(implementation):
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [-5, -5, 2, 2]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert sorted(batched_nms(boxes, scores, torch.tensor([0, 1, 1]), 0.5).tolist()) == [0, 1, 2]
    assert sorted(batched_nms(boxes, scores, torch.tensor([0, 0, 1]), 0.5).tolist()) == [0, 2]


def test_the_mask_form_keeps_images_apart_and_skips_invalid_candidates(implementation):
    g = torch.Generator().manual_seed(7)
    b, n = 3, 80
    boxes = torch.stack([random_xyxy(n, s) for s in range(b)])
    boxes[1] = boxes[0]  # the same boxes in two images never suppress each other
    scores = torch.rand(b, n, generator=g)
    labels = torch.randint(0, 3, (b, n), generator=g)
    valid = torch.rand(b, n, generator=g) > 0.2
    keep = batched_nms_mask(boxes, scores, labels, valid, 0.45)
    for i in range(b):
        idx = valid[i].nonzero().squeeze(1)
        expected = idx[_reference_nms(boxes[i][idx], scores[i][idx], labels[i][idx], 0.45)]
        assert sorted(keep[i].nonzero().squeeze(1).tolist()) == sorted(expected.tolist())
    assert not keep[~valid].any()


def test_the_matrix_method_and_torchvision_agree(monkeypatch):
    pytest.importorskip("torchvision")
    g = torch.Generator().manual_seed(3)
    boxes = torch.stack([random_xyxy(300, s) for s in range(4)])
    scores, labels = torch.rand(4, 300, generator=g), torch.randint(0, 5, (4, 300), generator=g)
    valid = torch.ones(4, 300, dtype=torch.bool)
    with_tv = batched_nms_mask(boxes, scores, labels, valid, 0.45)
    monkeypatch.setattr(nms_module, "_torchvision_batched_nms", lambda: None)
    assert torch.equal(batched_nms_mask(boxes, scores, labels, valid, 0.45), with_tv)


def test_images_in_groups_and_chunks_give_the_same_keeps(monkeypatch):
    # 5 images of 80 candidates: groups of 3 images (3 + 2), IoUs 2 images at a time (2 + 1, 2).
    monkeypatch.setattr(nms_module, "_torchvision_batched_nms", lambda: None)
    g = torch.Generator().manual_seed(11)
    boxes = torch.stack([random_xyxy(80, s) for s in range(5)])
    scores, labels = torch.rand(5, 80, generator=g), torch.randint(0, 2, (5, 80), generator=g)
    valid = torch.rand(5, 80, generator=g) > 0.1
    whole = batched_nms_mask(boxes, scores, labels, valid, 0.4)
    monkeypatch.setattr(nms_module, "_GROUP_ELEMENTS", 3 * 80 * 80)
    monkeypatch.setattr(nms_module, "_CHUNK_ELEMENTS", 2 * 80 * 80)
    assert torch.equal(batched_nms_mask(boxes, scores, labels, valid, 0.4), whole)
