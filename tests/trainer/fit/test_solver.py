"""Fitting anchors to box shapes without training: deterministic, exact on degenerate data, and the
log-space objective recovers a known mixture."""

from __future__ import annotations

import pytest
import torch

from trainer.fit.solver import MIN_BOX_PX, fit_anchors
from trainer.model.anchors import anchor_fit, kmeans_init, matched_log_error

SHAPES = torch.tensor([[12.0, 12.0], [16.0, 40.0], [42.0, 18.0], [36.0, 36.0], [72.0, 56.0]])


def mixture(n: int = 3000, spread: float = 0.1, seed: int = 0, shapes: torch.Tensor = SHAPES) -> torch.Tensor:
    """[n, 2] px: boxes log-normally spread around `shapes`, equal shares."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, len(shapes), (n,), generator=g)
    return (shapes.log()[k] + spread * torch.randn(n, 2, generator=g)).exp()


@pytest.mark.parametrize("method", ["kmeans", "learned"])
def test_two_calls_give_identical_results(method):
    boxes = mixture()
    a, b = fit_anchors(boxes, 5, method, seed=3), fit_anchors(boxes, 5, method, seed=3)
    assert torch.equal(a.anchors, b.anchors) and a.steps == b.steps
    assert (a.path is None and b.path is None) or torch.equal(a.path, b.path)
    assert a.boxes_per_anchor.tolist() == b.boxes_per_anchor.tolist()


def test_learned_result_is_sorted_and_its_path_runs_from_init_to_anchors():
    fit = fit_anchors(mixture(), 5, "learned")
    areas = fit.anchors.prod(-1)
    assert bool((areas[1:] >= areas[:-1]).all())
    assert fit.path.shape[1:] == (5, 2) and fit.path.shape[0] == fit.steps + 1
    torch.testing.assert_close(fit.path[0], fit.init)
    torch.testing.assert_close(fit.path[-1], fit.anchors)
    assert fit.converged and fit.soft_steps > 0 and fit.hard_steps > 0
    assert int(fit.boxes_per_anchor.sum()) == fit.boxes_used == 3000


@pytest.mark.parametrize("init", ["identical", "uniform", "kmeans"])
def test_learned_recovers_a_known_mixture_from_any_init(init):
    fit = fit_anchors(mixture(spread=0.1), 5, "learned", init=init)
    assert matched_log_error(fit.anchors, SHAPES) < 0.03  # within ~3 % of the true shapes


def test_learned_fits_a_lognormal_mixture_at_least_as_well_as_kmeans():
    boxes = mixture(n=4000, spread=0.2, seed=1)
    learned, kmeans = fit_anchors(boxes, 5, "learned"), fit_anchors(boxes, 5, "kmeans")
    iou_l = anchor_fit(learned.anchors, boxes)["mean_best_iou"]
    iou_k = anchor_fit(kmeans.anchors, boxes)["mean_best_iou"]
    assert iou_l >= iou_k - 1e-3
    # IoU k-means averages w and h linearly, which biases its centres up by ~exp(spread^2 / 2).
    assert matched_log_error(learned.anchors, SHAPES) <= matched_log_error(kmeans.anchors, SHAPES)


@pytest.mark.parametrize("size", [4.0, 300.0])
def test_soft_phase_rescues_anchors_that_start_outside_the_data(size):
    start = torch.full((5, 2), size)
    hard_only = fit_anchors(mixture(), 5, "learned", init=start, soft_steps=0)
    assert int((hard_only.boxes_per_anchor == 0).sum()) >= 2  # starved: they never see a box
    fit = fit_anchors(mixture(), 5, "learned", init=start)
    assert bool((fit.boxes_per_anchor > 0).all()) and matched_log_error(fit.anchors, SHAPES) < 0.03


def test_coinciding_init_anchors_split_apart():
    fit = fit_anchors(mixture(), 5, "learned", init=torch.full((5, 2), 25.0))
    assert len(fit.anchors.unique(dim=0)) == 5
    assert matched_log_error(fit.anchors, SHAPES) < 0.03


@pytest.mark.parametrize("method", ["kmeans", "learned"])
def test_one_box(method):
    fit = fit_anchors(torch.tensor([[30.0, 20.0]]), 5, method)
    assert fit.anchors.tolist() == [[30.0, 20.0]] * 5 and fit.boxes_used == 1


@pytest.mark.parametrize("method", ["kmeans", "learned"])
def test_all_boxes_equal(method):
    fit = fit_anchors(torch.tensor([[30.0, 20.0]]).expand(500, 2), 3, method)
    assert fit.anchors.tolist() == [[30.0, 20.0]] * 3
    assert anchor_fit(fit.anchors, torch.tensor([[30.0, 20.0]]))["mean_best_iou"] == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["kmeans", "learned"])
def test_fewer_distinct_shapes_than_anchors_makes_each_shape_an_anchor(method):
    shapes = torch.tensor([[10.0, 10.0], [20.0, 40.0], [50.0, 25.0]])
    boxes = shapes.repeat(100, 1)
    fit = fit_anchors(boxes, 5, method)
    assert {tuple(r) for r in fit.anchors.tolist()} == {tuple(r) for r in shapes.tolist()}
    assert anchor_fit(fit.anchors, boxes)["mean_best_iou"] == pytest.approx(1.0)


def test_boxes_under_two_pixels_are_left_out_and_counted():
    boxes = torch.cat([mixture(500), torch.tensor([[1.5, 30.0], [30.0, 0.5], [float("nan"), 4.0]])])
    fit = fit_anchors(boxes, 5, "learned")
    assert fit.boxes_used == 500 and fit.boxes_left_out == 3


@pytest.mark.parametrize("method", ["kmeans", "learned"])
def test_only_tiny_boxes_is_a_clear_error(method):
    with pytest.raises(ValueError, match=f"all 3 boxes are under {MIN_BOX_PX:g} px"):
        fit_anchors(torch.tensor([[1.0, 1.0], [1.5, 3.0], [5.0, 1.9]]), 5, method)


@pytest.mark.parametrize("boxes", [torch.zeros(0, 2), [], torch.zeros(0, 4)])
def test_zero_boxes_is_a_clear_error(boxes):
    with pytest.raises(ValueError, match="no boxes to fit anchors to"):
        fit_anchors(boxes, 5, "learned")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "genetic"}, "unknown method"),
        ({"init": "random"}, "unknown init"),
        ({"init": torch.ones(3, 2)}, "5 positive"),
        ({"temperature": 0.0}, "temperature"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_anchors(mixture(200), 5, **kwargs)


def test_kmeans_method_is_yolov2_kmeans_on_the_usable_boxes():
    boxes = mixture(1000)
    fit = fit_anchors(torch.cat([boxes, torch.tensor([[1.0, 1.0]])]), 5, "kmeans", seed=2)
    torch.testing.assert_close(fit.anchors, kmeans_init(5, boxes, seed=2))
    assert fit.init is None and fit.path is None and fit.steps is None


def test_the_thread_count_is_restored():
    before = torch.get_num_threads()
    fit_anchors(mixture(300), 3, "learned")
    assert torch.get_num_threads() == before
