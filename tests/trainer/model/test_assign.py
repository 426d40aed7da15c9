import pytest
import torch

from trainer.config import SoftAssignConfig
from trainer.model.assign import assign, assignment_distance, hard_weights, soft_weights

ANCHORS = torch.tensor([[8.0, 8.0], [16.0, 32.0], [40.0, 20.0]])


def random_boxes_wh(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 2, generator=g) * 4 + 1.5).exp()


def targets_from(rows):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)


@pytest.mark.parametrize("dist", ["iou", "log_l2"])
def test_soft_weights_sum_to_one_per_box(dist):
    w = soft_weights(random_boxes_wh(), ANCHORS, temperature=0.3, dist=dist)
    assert w.shape == (40, 3) and bool((w > 0).all())
    torch.testing.assert_close(w.sum(-1), torch.ones(40))


def test_vanishing_temperature_gives_the_hard_assignment():
    boxes = random_boxes_wh(200, seed=1)
    torch.testing.assert_close(soft_weights(boxes, ANCHORS, 1e-4, "iou"), hard_weights(boxes, ANCHORS))
    # with the log-space distance, T -> 0 picks the nearest anchor in log space
    nearest = assignment_distance(boxes, ANCHORS, "log_l2").argmin(-1)
    assert torch.equal(soft_weights(boxes, ANCHORS, 1e-4, "log_l2").argmax(-1), nearest)


def test_hard_assignment_picks_best_shape_iou():
    boxes = torch.tensor([[9.0, 7.0], [15.0, 35.0], [45.0, 18.0]])
    assert hard_weights(boxes, ANCHORS).argmax(-1).tolist() == [0, 1, 2]


def test_assign_puts_each_box_in_the_cell_of_its_centre():
    # two images: box centres at (20, 40) -> cell (x=1, y=2) and (63, 1) -> cell (3, 0) at stride 16
    t = targets_from([[0, 2, 10, 30, 30, 50], [1, 0, 60, -2, 66, 4]])
    a = assign(t, ANCHORS.log(), stride=16, grid_hw=(4, 4))
    assert a.batch.tolist() == [0, 1] and a.cls.tolist() == [2, 0]
    assert a.gx.tolist() == [1, 3] and a.gy.tolist() == [2, 0]
    torch.testing.assert_close(a.offset_xy[0], torch.tensor([0.25, 0.5]))
    torch.testing.assert_close(a.log_wh[0], torch.tensor([20.0, 20.0]).log())
    torch.testing.assert_close(a.weights.sum(-1), torch.ones(2))


def test_assign_soft_during_warmup():
    t = targets_from([[0, 0, 0, 0, 10, 10]])
    a = assign(t, ANCHORS.log(), 16, (4, 4), SoftAssignConfig(temperature=0.5))
    assert bool((a.weights > 0).all())


def test_assign_with_no_boxes():
    a = assign(torch.zeros(0, 6), ANCHORS.log(), 16, (4, 4), SoftAssignConfig())
    assert a.num == 0 and a.weights.shape == (0, 3) and a.offset_xy.shape == (0, 2)


def test_assignment_does_not_differentiate_through_anchors():
    log_a = ANCHORS.log().requires_grad_()
    a = assign(targets_from([[0, 0, 0, 0, 10, 10]]), log_a, 16, (4, 4), SoftAssignConfig())
    assert not a.weights.requires_grad


def test_unknown_distance_is_an_error():
    with pytest.raises(ValueError, match="distance"):
        assignment_distance(random_boxes_wh(), ANCHORS, "l1")
