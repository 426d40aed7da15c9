import math

import pytest
import torch

from trainer.config import AnchorConfig
from trainer.model.anchors import (
    Anchors,
    anchor_fit,
    cells_to_pixels,
    identical_init,
    initial_anchors,
    kmeans_init,
    matched_log_error,
    pixels_to_cells,
    uniform_init,
)


def clustered_boxes(centres, n=200, spread=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    parts = [torch.tensor(c).log() + spread * torch.randn(n, 2, generator=g) for c in centres]
    return torch.cat(parts).exp()


def test_anchors_are_a_log_space_parameter():
    a = Anchors(torch.tensor([[10.0, 20.0], [30.0, 15.0]]))
    assert isinstance(a.log_wh, torch.nn.Parameter) and a.log_wh.shape == (2, 2)
    torch.testing.assert_close(a.log_wh.data, torch.tensor([[10.0, 20.0], [30.0, 15.0]]).log())
    torch.testing.assert_close(a.wh(), torch.tensor([[10.0, 20.0], [30.0, 15.0]]))
    assert "log_wh" in a.state_dict()
    group = a.param_group(0.05)
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.0 and group["params"] == [a.log_wh]


def test_frozen_anchors_have_no_gradient():
    a = Anchors(torch.tensor([[10.0, 20.0]]), learn=False)
    assert not a.learn and not a.log_wh.requires_grad


@pytest.mark.parametrize("bad", [[[10.0, -1.0]], [[0.0, 5.0]], [10.0, 5.0]])
def test_anchors_reject_bad_shapes(bad):
    with pytest.raises(ValueError):
        Anchors(torch.tensor(bad))


def test_pixel_cell_conversion():
    wh = torch.tensor([[32.0, 64.0]])
    assert pixels_to_cells(wh, 32).tolist() == [[1.0, 2.0]]
    torch.testing.assert_close(cells_to_pixels(pixels_to_cells(wh, 16), 16), wh)


def test_identical_init_is_the_geometric_mean_or_a_given_size():
    boxes = torch.tensor([[4.0, 1.0], [16.0, 4.0]])
    torch.testing.assert_close(identical_init(3, boxes), torch.tensor([[8.0, 2.0]] * 3))
    assert identical_init(2, size=20.0).tolist() == [[20.0, 20.0]] * 2


def test_uniform_init_spreads_evenly_in_log_space():
    boxes = torch.tensor([[2.0, 4.0], [32.0, 64.0]])
    got = uniform_init(4, boxes, low_q=0.0, high_q=1.0)
    logs = got.log()
    steps = logs[1:] - logs[:-1]
    torch.testing.assert_close(steps, steps[:1].expand_as(steps))  # even spacing
    torch.testing.assert_close(logs[0], torch.tensor([2.0, 4.0]).log() + steps[0] / 2)


@pytest.mark.parametrize("centroid", ["median", "mean"])
def test_kmeans_finds_known_clusters(centroid):
    centres = [[10.0, 10.0], [20.0, 50.0], [60.0, 25.0]]
    got = kmeans_init(3, clustered_boxes(centres), centroid=centroid)
    assert matched_log_error(got, torch.tensor(centres)) < 0.03


@pytest.mark.parametrize("centroid", ["median", "mean"])
def test_kmeans_is_deterministic_given_a_seed(centroid):
    boxes = clustered_boxes([[10.0, 10.0], [20.0, 50.0], [60.0, 25.0], [30, 30]], spread=0.3)
    a, b = kmeans_init(5, boxes, seed=3, centroid=centroid), kmeans_init(5, boxes, seed=3, centroid=centroid)
    assert torch.equal(a, b)


def test_kmeans_centroids_median_by_default_or_mean():
    # One cluster: nine 10 x 10 boxes and one 100 x 100. The mean of w and h is 19 x 19, the median
    # 10 x 10 (every box's nearest centre is the only one, so one update settles it).
    boxes = torch.tensor([[10.0, 10.0]] * 9 + [[100.0, 100.0]])
    assert kmeans_init(1, boxes).tolist() == [[10.0, 10.0]]
    assert kmeans_init(1, boxes, centroid="median").tolist() == [[10.0, 10.0]]
    assert kmeans_init(1, boxes, centroid="mean").tolist() == [[19.0, 19.0]]
    # An even count takes the mean of the two middle values, per coordinate.
    assert kmeans_init(1, torch.tensor([[4.0, 30.0], [6.0, 10.0], [8.0, 20.0], [100.0, 40.0]])).tolist() == [
        [7.0, 25.0]
    ]


def test_median_kmeans_fits_a_skewed_set_better_than_mean_kmeans():
    # Two clusters with a long tail of large boxes each: the mean follows the tail, the median the bulk.
    g = torch.Generator().manual_seed(0)
    bulk = clustered_boxes([[12.0, 30.0], [60.0, 40.0]], n=400, spread=0.1)
    tail = torch.tensor([[12.0, 30.0], [60.0, 40.0]]).repeat(40, 1) * (2 + 3 * torch.rand(80, 1, generator=g))
    boxes = torch.cat([bulk, tail])
    median, mean = kmeans_init(2, boxes), kmeans_init(2, boxes, centroid="mean")
    assert not torch.allclose(median, mean, rtol=0.05)
    assert anchor_fit(median, boxes)["mean_best_iou"] > anchor_fit(mean, boxes)["mean_best_iou"]


def test_kmeans_rejects_an_unknown_centroid():
    with pytest.raises(ValueError, match="unknown k-means centroid 'mode'"):
        kmeans_init(2, clustered_boxes([[10.0, 10.0], [40.0, 40.0]]), centroid="mode")


def test_kmeans_with_fewer_distinct_shapes_than_anchors():
    boxes = torch.tensor([[10.0, 10.0]] * 5 + [[40.0, 20.0]] * 2)
    got = kmeans_init(5, boxes)
    assert got.shape == (5, 2)
    assert {tuple(r) for r in got.tolist()} == {(10.0, 10.0), (40.0, 20.0)}
    assert kmeans_init(3, torch.tensor([[7.0, 3.0]])).tolist() == [[7.0, 3.0]] * 3


def test_inits_refuse_data_without_boxes():
    with pytest.raises(ValueError, match="no boxes"):
        kmeans_init(5, torch.zeros(0, 2))
    with pytest.raises(ValueError, match="no boxes"):
        uniform_init(5, torch.tensor([[0.0, 3.0]]))


def test_initial_anchors_follows_the_config():
    boxes = clustered_boxes([[10.0, 10.0], [40.0, 40.0]])
    listed = initial_anchors(AnchorConfig(num=2, init="list", values=[(5, 6), (7, 8)]), boxes)
    assert listed.tolist() == [[5.0, 6.0], [7.0, 8.0]]
    assert initial_anchors(AnchorConfig(num=2, init="kmeans"), boxes).shape == (2, 2)
    same = initial_anchors(AnchorConfig(num=2, init="identical"), boxes)
    assert torch.equal(same[0], same[1])


def test_anchor_fit_metrics():
    boxes = torch.tensor([[10.0, 10.0], [40.0, 20.0]])
    perfect = anchor_fit(boxes, boxes)
    assert perfect == {"mean_best_iou": pytest.approx(1.0), "bpr": 1.0, "anchors_per_target": 1.0}
    far = anchor_fit(torch.tensor([[100.0, 100.0]]), torch.tensor([[10.0, 10.0]]))
    assert far["bpr"] == 0.0 and far["mean_best_iou"] == pytest.approx(0.01)
    assert math.isnan(anchor_fit(boxes, torch.zeros(0, 2))["bpr"])


def test_matched_log_error_uses_the_best_matching():
    a = torch.tensor([[10.0, 10.0], [20.0, 40.0]])
    assert matched_log_error(a, a.flip(0)) == pytest.approx(0.0, abs=1e-9)
    assert matched_log_error(a, a * math.e**0.1) == pytest.approx(0.1)
