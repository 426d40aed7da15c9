import math

import pytest
import torch

from trainer.config import LossConfig, SoftAssignConfig
from trainer.model.assign import soft_weights
from trainer.model.loss import yolo_loss

STRIDE = 16
ANCHORS = torch.tensor([[8.0, 8.0], [16.0, 32.0]])


def setup(batch=1, classes=2):
    pred = torch.zeros(batch, 2, 2, 2, 5 + classes, requires_grad=True)  # A=2, 2x2 grid (32 px input)
    log_anchors = ANCHORS.log().clone().requires_grad_()
    return pred, log_anchors


def with_offsets(pred, values):
    """Sets (tw, th) at (image, anchor, gy, gx) positions, keeping pred a leaf."""
    data = pred.detach().clone()
    for (b, k, gy, gx), (tw, th) in values.items():
        data[b, k, gy, gx, 2], data[b, k, gy, gx, 3] = tw, th
    return data.requires_grad_()


def test_anchor_gradient_is_eq9_hard_assignment():
    pred, log_anchors = setup(batch=2)
    # image 0: a 10x12 box centred at (8, 8) -> cell (0, 0), best shape IoU with anchor 0 (8x8)
    # image 1: a 15x30 box centred at (24, 24) -> cell (1, 1), anchor 1 (16x32)
    targets = torch.tensor([[0, 1, 3, 2, 13, 14], [1, 0, 16.5, 9, 31.5, 39]])
    pred = with_offsets(pred, {(0, 0, 0, 0): (0.3, -0.2), (1, 1, 1, 1): (0.1, 0.4)})
    terms, stats = yolo_loss(pred, log_anchors, targets, STRIDE, LossConfig())
    terms["total"].backward()
    b = 2
    expected = torch.tensor(
        [
            [2 / b * (0.3 + math.log(8) - math.log(10)), 2 / b * (-0.2 + math.log(8) - math.log(12))],
            [2 / b * (0.1 + math.log(16) - math.log(15)), 2 / b * (0.4 + math.log(32) - math.log(30))],
        ]
    )
    torch.testing.assert_close(log_anchors.grad, expected)
    assert stats["assign_counts"].tolist() == [1, 1]
    assert set(terms) == {"xy", "wh", "obj", "noobj", "cls", "total"}


def test_anchor_gradient_is_eq9_soft_assignment():
    pred, log_anchors = setup()
    targets = torch.tensor([[0, 1, 3, 2, 13, 14]])
    pred = with_offsets(pred, {(0, 0, 0, 0): (0.3, -0.2), (0, 1, 0, 0): (-0.5, 0.25)})
    soft = SoftAssignConfig(temperature=0.2, dist="iou")
    terms, _ = yolo_loss(pred, log_anchors, targets, STRIDE, LossConfig(wh=0.5), soft=soft)
    terms["total"].backward()
    g = torch.tensor([10.0, 12.0]).log()
    delta = soft_weights(torch.tensor([[10.0, 12.0]]), ANCHORS, 0.2, "iou")[0]
    offsets = torch.tensor([[0.3, -0.2], [-0.5, 0.25]])
    expected = 0.5 * 2 * delta[:, None] * (offsets + ANCHORS.log() - g)
    torch.testing.assert_close(log_anchors.grad, expected)


def test_frozen_anchors_get_no_gradient():
    pred, _ = setup()
    frozen = ANCHORS.log()  # requires_grad False: the baseline
    terms, _ = yolo_loss(pred, frozen, torch.tensor([[0, 1, 3, 2, 13, 14]]), STRIDE, LossConfig())
    terms["total"].backward()
    assert frozen.grad is None and pred.grad is not None


def test_clustering_gradient_pulls_anchors_to_their_boxes_log_mean():
    pred, log_anchors = setup()
    # three boxes, all hard-assigned to anchor 0 (small squares), none to anchor 1
    targets = torch.tensor([[0, 0, 0, 0, 6, 6], [0, 0, 0, 0, 10, 12], [0, 0, 16, 16, 28, 26]])
    lam = 2.0
    terms, _ = yolo_loss(pred, log_anchors, targets, STRIDE, LossConfig(wh=0.0), cluster_weight=lam)
    (grad,) = torch.autograd.grad(terms["cluster"], log_anchors)
    g = torch.tensor([[6.0, 6.0], [10.0, 12.0], [12.0, 10.0]]).log()
    expected0 = lam / 3 * (ANCHORS.log()[0] - g).sum(0)  # lambda / N * sum_j (a - g_j)
    torch.testing.assert_close(grad[0], expected0)
    assert grad[1].abs().max() == 0
    # a gradient step moves anchor 0 toward the log-mean of its boxes, and it is a fixed point there
    log_mean = g.mean(0)
    stepped = ANCHORS.log()[0] - 0.1 * grad[0]
    assert (stepped - log_mean).norm() < (ANCHORS.log()[0] - log_mean).norm()
    at_mean = torch.stack([log_mean, ANCHORS.log()[1]]).requires_grad_()
    terms, _ = yolo_loss(pred, at_mean, targets, STRIDE, LossConfig(wh=0.0), cluster_weight=lam)
    (grad,) = torch.autograd.grad(terms["cluster"], at_mean)
    torch.testing.assert_close(grad, torch.zeros(2, 2))


def test_batch_without_boxes_is_fine():
    pred, log_anchors = setup(batch=3)
    terms, stats = yolo_loss(
        pred, log_anchors, torch.zeros(0, 6), STRIDE, LossConfig(), SoftAssignConfig(), 1.0
    )
    terms["total"].backward()
    assert all(torch.isfinite(v) for v in terms.values())
    assert terms["wh"].item() == 0 and terms["noobj"].item() > 0
    assert torch.equal(log_anchors.grad, torch.zeros(2, 2))
    assert stats["num_boxes"].item() == 0


def test_background_that_already_fits_a_box_is_ignored():
    pred, log_anchors = setup()
    # A 16x32 box centred at (8, 16) belongs to cell (gy=1, gx=0), anchor 1. Anchor 1 of the cell
    # above, (0, 0), decodes to a 16x32 box centred at (8, 8): IoU 0.6 with the ground truth.
    target = torch.tensor([[0, 0, 0, 0, 16, 32]])
    counted, _ = yolo_loss(pred, log_anchors, target, STRIDE, LossConfig(ignore_iou=1.0))
    ignored, _ = yolo_loss(pred, log_anchors, target, STRIDE, LossConfig(ignore_iou=0.5))
    one_position = torch.nn.functional.softplus(torch.tensor(0.0)).item() * 0.5  # BCE(0, 0) x noobj weight
    assert counted["noobj"].item() - ignored["noobj"].item() == pytest.approx(one_position)


def test_ignored_positions_match_a_brute_force_per_image_check():
    from trainer.model.boxes import box_iou
    from trainer.model.decode import decode_boxes
    from trainer.model.loss import _ignored

    gen = torch.Generator().manual_seed(0)
    b, a, h, w = 4, 3, 4, 4
    pred = torch.randn(b, a, h, w, 7, generator=gen)
    log_anchors = torch.tensor([[10.0, 10.0], [20.0, 12.0], [12.0, 24.0]]).log()
    xy = torch.rand(9, 2, generator=gen) * 48
    wh = torch.rand(9, 2, generator=gen) * 20 + 4
    images = torch.tensor([0, 0, 0, 1, 3, 3, 3, 3, 0.0])  # image 2 has no boxes; not sorted
    targets = torch.cat([images[:, None], torch.zeros(9, 1), xy, xy + wh], 1)
    got = _ignored(pred, log_anchors, targets, 16, 0.3)
    boxes = decode_boxes(pred, log_anchors, 16).view(b, -1, 4)
    for i in range(b):
        mine = targets[targets[:, 0] == i, 2:6]
        want = (
            box_iou(boxes[i], mine).amax(-1) > 0.3 if len(mine) else torch.zeros(a * h * w, dtype=torch.bool)
        )
        assert torch.equal(got[i].reshape(-1), want)
    assert got.any() and not got[2].any()


# --- several levels -----------------------------------------------------------------------------


def two_levels(classes=2):
    """Level 0: stride 8 on a 4x4 grid with anchors 8x8, 12x12; level 1: stride 16, 2x2, 32x32, 40x40."""
    fine = torch.zeros(1, 2, 4, 4, 5 + classes, requires_grad=True)
    coarse = torch.zeros(1, 2, 2, 2, 5 + classes, requires_grad=True)
    log_anchors = torch.tensor([[8.0, 8.0], [12.0, 12.0], [32.0, 32.0], [40.0, 40.0]]).log().requires_grad_()
    return fine, coarse, log_anchors


def test_one_level_given_as_a_list_is_the_one_level_loss():
    pred, log_anchors = setup(batch=2)
    targets = torch.tensor([[0, 1, 3, 2, 13, 14], [1, 0, 16.5, 9, 31.5, 39]])
    soft = SoftAssignConfig()
    alone, _ = yolo_loss(pred, log_anchors, targets, STRIDE, LossConfig(), soft, 3.0)
    listed, _ = yolo_loss([pred], log_anchors, targets, [STRIDE], LossConfig(), soft, 3.0)
    assert alone.keys() == listed.keys()
    for k in alone:
        torch.testing.assert_close(alone[k], listed[k], rtol=0, atol=0)


def test_hard_assignment_across_levels_puts_a_box_on_its_best_anchor_in_that_levels_cell():
    fine, coarse, log_anchors = two_levels()
    # a 36x36 box centred at (20, 12): best anchor 40x40? IoU 36^2/40^2 = 0.81 vs 32x32: 32^2/36^2 = 0.79
    targets = torch.tensor([[0, 1, 2, -6, 38, 30]])
    no_ignoring = LossConfig(ignore_iou=1.0)  # so every unassigned position is background
    terms, stats = yolo_loss([fine, coarse], log_anchors, targets, [8, 16], no_ignoring)
    assert stats["assign_counts"].tolist() == [0, 0, 0, 1]
    terms["total"].backward()
    assert log_anchors.grad[:3].abs().sum() == 0 and log_anchors.grad[3].abs().sum() > 0  # only anchor 3
    # the box's objectness target sits at level 1, anchor 1 (global 3), cell (0, 1) = centre (20, 12) / 16
    obj_grad = coarse.grad[..., 4]
    assert obj_grad[0, 1, 0, 1] < 0  # pushed up: the positive
    assert (fine.grad[..., 4] > 0).all()  # every fine position is background
    assert (obj_grad[0, 0] > 0).all() and (obj_grad[0, 1].flatten()[[0, 2, 3]] > 0).all()


def test_soft_assignment_across_levels_is_one_softmax_over_every_anchor():
    fine, coarse, log_anchors = two_levels()
    targets = torch.tensor([[0, 1, 2, -6, 38, 30], [0, 0, 4, 4, 14, 14]])
    soft = SoftAssignConfig(temperature=0.5)
    from trainer.model.assign import assign_levels

    levels = assign_levels(targets, log_anchors, [8, 16], [(4, 4), (2, 2)], soft)
    weights = torch.cat([lv.weights for lv in levels], 1)
    torch.testing.assert_close(weights.sum(1), torch.ones(2))
    expected = soft_weights(
        torch.tensor([[36.0, 36.0], [10.0, 10.0]]), log_anchors.detach().exp(), 0.5, "iou"
    )
    torch.testing.assert_close(weights, expected)
    assert (levels[0].gx.tolist(), levels[0].gy.tolist()) == ([2, 1], [1, 1])  # centres (20, 12), (9, 9) / 8
    assert (levels[1].gx.tolist(), levels[1].gy.tolist()) == ([1, 0], [0, 0])  # the same / 16
    terms, _ = yolo_loss([fine, coarse], log_anchors, targets, [8, 16], LossConfig(), soft, 3.0)
    terms["total"].backward()
    assert (log_anchors.grad.abs().sum(1) > 0).all()  # every anchor of both levels learns from both boxes


def test_the_clustering_term_runs_over_the_anchors_of_every_level():
    fine, coarse, log_anchors = two_levels()
    targets = torch.tensor([[0, 1, 2, -6, 38, 30], [0, 0, 4, 4, 14, 14]])
    loss = LossConfig(xy=0, wh=0, obj=0, noobj=0, cls=0)
    soft = SoftAssignConfig(temperature=0.5)
    terms, _ = yolo_loss([fine, coarse], log_anchors, targets, [8, 16], loss, soft, 2.0)
    boxes = torch.tensor([[36.0, 36.0], [10.0, 10.0]]).log()
    delta = soft_weights(boxes.exp(), log_anchors.detach().exp(), 0.5, "iou")
    expected = 2.0 / (2 * 2) * (delta * (log_anchors[None] - boxes[:, None]).pow(2).sum(-1)).sum()
    torch.testing.assert_close(terms["cluster"], expected)
