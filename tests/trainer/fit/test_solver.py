"""Fitting anchors to box shapes without training: deterministic, exact on degenerate data, the
log-space objective recovers a known mixture, the IoU phase raises mean IoU without lowering BPR,
and several levels are split by area and kept above their strides."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import SHARED_DATA
from trainer.fit.solver import MIN_BOX_PX, fit_anchors
from trainer.fit.strides import stride_floor
from trainer.model.anchors import anchor_fit, kmeans_init, matched_log_error

SHAPES = torch.tensor([[12.0, 12.0], [16.0, 40.0], [42.0, 18.0], [36.0, 36.0], [72.0, 56.0]])


def mixture(n: int = 3000, spread: float = 0.1, seed: int = 0, shapes: torch.Tensor = SHAPES) -> torch.Tensor:
    """[n, 2] px: boxes log-normally spread around `shapes`, equal shares."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, len(shapes), (n,), generator=g)
    return (shapes.log()[k] + spread * torch.randn(n, 2, generator=g)).exp()


def voc07_boxes() -> torch.Tensor:
    """Every VOC07 box (train + val + test) at 416 px, as bench/fit_speed.py reads them."""
    from trainer.data.records import concat_sets
    from trainer.data.sources import open_dataset

    files = [SHARED_DATA / "voc" / f"pascal_{s}2007.json" for s in ("train", "val", "test")]
    if not all(f.exists() for f in files):
        pytest.skip(f"VOC07 annotation JSONs not found in {SHARED_DATA / 'voc'} (real data, not downloaded)")
    sets = [open_dataset(f, "coco", check_images=False) for f in files]
    return torch.from_numpy(concat_sets(sets).boxes_wh(416))


@pytest.mark.parametrize(
    ("method", "settings"),
    [("kmeans", {}), ("kmeans", {"centroid": "mean"}), ("learned", {}), ("learned", {"refine_steps": 0}),
     ("autoanchor", {})],
)  # fmt: skip
def test_two_calls_give_identical_results(method, settings):
    boxes = mixture(1000 if method == "autoanchor" else 3000)
    a, b = (fit_anchors(boxes, 5, method, seed=3, **settings) for _ in range(2))
    assert torch.equal(a.anchors, b.anchors) and a.steps == b.steps
    assert (a.path is None and b.path is None) or torch.equal(a.path, b.path)
    assert a.boxes_per_anchor.tolist() == b.boxes_per_anchor.tolist()


@pytest.mark.parametrize("refine_steps", [0, 200])
def test_learned_result_is_sorted_and_its_path_runs_from_init_to_anchors(refine_steps):
    fit = fit_anchors(mixture(), 5, "learned", refine_steps=refine_steps)
    areas = fit.anchors.prod(-1)
    assert bool((areas[1:] >= areas[:-1]).all())
    torch.testing.assert_close(fit.path[0], fit.init)
    torch.testing.assert_close(fit.path[-1], fit.anchors)
    assert fit.converged and fit.soft_steps > 0 and int(fit.boxes_per_anchor.sum()) == fit.boxes_used == 3000
    if refine_steps:  # warm-up, then the IoU phase: the path holds its steps up to the best one
        assert fit.objective == "log-space+iou-refine" and fit.hard_steps == 0 and fit.refine_steps > 0
        assert fit.steps == fit.soft_steps + fit.refine_steps >= fit.path.shape[0] - 1
        assert fit.refine["mean_best_iou_after"] >= fit.refine["mean_best_iou_before"]
    else:  # the log-space objective alone: every soft and hard step on the path
        assert fit.objective == "log-space" and fit.hard_steps > 0 and fit.refine is None
        assert fit.path.shape == (fit.steps + 1, 5, 2)


@pytest.mark.parametrize("refine_steps", [0, 200])
@pytest.mark.parametrize("init", ["identical", "uniform", "kmeans"])
def test_learned_recovers_a_known_mixture_from_any_init(init, refine_steps):
    fit = fit_anchors(mixture(spread=0.1), 5, "learned", init=init, refine_steps=refine_steps)
    assert matched_log_error(fit.anchors, SHAPES) < 0.03  # within ~3 % of the true shapes


def test_learned_fits_a_lognormal_mixture_at_least_as_well_as_kmeans():
    boxes = mixture(n=4000, spread=0.2, seed=1)
    learned, log_space = fit_anchors(boxes, 5, "learned"), fit_anchors(boxes, 5, "learned", refine_steps=0)
    median, mean = fit_anchors(boxes, 5, "kmeans"), fit_anchors(boxes, 5, "kmeans", centroid="mean")
    iou = {name: anchor_fit(f.anchors, boxes)["mean_best_iou"] for name, f in
           (("learned", learned), ("log", log_space), ("median", median), ("mean", mean))}  # fmt: skip
    assert iou["learned"] >= max(iou.values()) - 1e-6
    # Mean-centroid k-means averages w and h linearly, which biases its centres up by ~exp(spread^2 / 2);
    # the log-space fit's geometric means, and the per-coordinate medians, sit on the true shapes.
    bias_mean = matched_log_error(mean.anchors, SHAPES)
    assert matched_log_error(log_space.anchors, SHAPES) < bias_mean
    assert matched_log_error(median.anchors, SHAPES) < bias_mean


@pytest.mark.parametrize("refine_steps", [0, 200])
@pytest.mark.parametrize("size", [4.0, 300.0])
def test_soft_phase_rescues_anchors_that_start_outside_the_data(size, refine_steps):
    start = torch.full((5, 2), size)
    no_warm_up = fit_anchors(mixture(), 5, "learned", init=start, soft_steps=0, refine_steps=refine_steps)
    assert int((no_warm_up.boxes_per_anchor == 0).sum()) >= 2  # starved: they never see a box
    fit = fit_anchors(mixture(), 5, "learned", init=start, refine_steps=refine_steps)
    assert bool((fit.boxes_per_anchor > 0).all()) and matched_log_error(fit.anchors, SHAPES) < 0.03


@pytest.mark.parametrize("refine_steps", [0, 200])
def test_coinciding_init_anchors_split_apart(refine_steps):
    fit = fit_anchors(mixture(), 5, "learned", init=torch.full((5, 2), 25.0), refine_steps=refine_steps)
    assert len(fit.anchors.unique(dim=0)) == 5
    assert matched_log_error(fit.anchors, SHAPES) < 0.03


@pytest.mark.parametrize("method", ["kmeans", "learned", "autoanchor"])
def test_one_box(method):
    fit = fit_anchors(torch.tensor([[30.0, 20.0]]), 5, method)
    assert fit.anchors.tolist() == [[30.0, 20.0]] * 5 and fit.boxes_used == 1


@pytest.mark.parametrize("method", ["kmeans", "learned", "autoanchor"])
def test_all_boxes_equal(method):
    fit = fit_anchors(torch.tensor([[30.0, 20.0]]).expand(500, 2), 3, method)
    assert fit.anchors.tolist() == [[30.0, 20.0]] * 3
    assert anchor_fit(fit.anchors, torch.tensor([[30.0, 20.0]]))["mean_best_iou"] == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["kmeans", "learned", "autoanchor"])
def test_fewer_distinct_shapes_than_anchors_makes_each_shape_an_anchor(method):
    shapes = torch.tensor([[10.0, 10.0], [20.0, 40.0], [50.0, 25.0]])
    boxes = shapes.repeat(100, 1)
    fit = fit_anchors(boxes, 5, method)
    assert {tuple(r) for r in fit.anchors.tolist()} == {tuple(r) for r in shapes.tolist()}
    assert anchor_fit(fit.anchors, boxes)["mean_best_iou"] == pytest.approx(1.0)


def test_a_box_is_fitted_when_either_side_is_two_pixels():
    # YOLOv5's rule: a 1 x 5 px box (a thin pole) is a shape; a 1 x 1 px box, and a 1.9 x 1.9, are noise.
    thin = torch.tensor([[1.0, 5.0], [30.0, 0.5], [1.5, 30.0]])
    noise = torch.tensor([[1.0, 1.0], [1.9, 1.9], [float("nan"), 4.0], [0.0, 8.0]])
    fit = fit_anchors(torch.cat([mixture(500), thin, noise]), 5, "learned")
    assert fit.boxes_used == 503 and fit.boxes_left_out == 4


@pytest.mark.parametrize("method", ["kmeans", "learned", "autoanchor"])
def test_only_tiny_boxes_is_a_clear_error(method):
    with pytest.raises(ValueError, match=f"all 3 boxes are under {MIN_BOX_PX:g} px in both width and height"):
        fit_anchors(torch.tensor([[1.0, 1.0], [1.5, 1.9], [0.5, 0.3]]), 5, method)


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
        ({"centroid": "mode"}, "unknown --centroid 'mode'"),
        ({"refine_steps": -1}, "--refine-steps must be 0"),
        ({"levels": 2}, "5 anchors do not split into 2 levels"),
        ({"levels": 0}, "--levels must be at least 1"),
        ({"levels": 1, "strides": [8, 16]}, "--strides lists 2 strides but --levels is 1"),
        ({"levels": 1, "strides": [16, 8]}, "distinct and ascending"),
        ({"min_stride_fraction": 0.0}, "--min-stride-fraction must be a positive number"),
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


# --- the IoU phase ---------------------------------------------------------------------------------


@pytest.mark.parametrize("num", [5, 9])
def test_iou_phase_raises_mean_iou_and_never_lowers_bpr_on_voc07(num):
    boxes = voc07_boxes()
    fit = fit_anchors(boxes, num, "learned")
    warm_up = fit_anchors(boxes, num, "learned", max_hard_steps=0, refine_steps=0)  # where it starts
    log_space = fit_anchors(boxes, num, "learned", refine_steps=0)
    got, start = anchor_fit(fit.anchors, boxes), anchor_fit(warm_up.anchors, boxes)
    assert fit.objective == "log-space+iou-refine" and fit.converged
    assert got["bpr"] >= start["bpr"]  # the guard, measured as the report measures it
    assert got["mean_best_iou"] > start["mean_best_iou"]
    assert got["mean_best_iou"] > anchor_fit(log_space.anchors, boxes)["mean_best_iou"]
    assert fit.refine["bpr_after"] >= fit.refine["bpr_before"]


def test_iou_phase_beats_autoanchor_on_voc07_at_equal_or_better_bpr():
    boxes = voc07_boxes()
    learned, auto = fit_anchors(boxes, 5, "learned"), fit_anchors(boxes, 5, "autoanchor")
    mine, theirs = anchor_fit(learned.anchors, boxes), anchor_fit(auto.anchors, boxes)
    assert auto.objective == "autoanchor"
    assert mine["mean_best_iou"] > theirs["mean_best_iou"] and mine["bpr"] >= theirs["bpr"]


# --- several levels ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["kmeans", "learned", "autoanchor"])
def test_levels_split_by_area_with_default_strides(method):
    fit = fit_anchors(mixture(1500), 9, method, levels=3)
    assert fit.levels == 3 and fit.strides == [8, 16, 32] and fit.anchor_levels == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    areas = fit.anchors.prod(-1)
    assert bool((areas[1:] >= areas[:-1]).all())  # level l holds rows 3l..3l+2, the smallest first


@pytest.mark.parametrize(
    ("method", "settings"),
    [("kmeans", {}), ("learned", {}), ("learned", {"refine_steps": 0}), ("autoanchor", {})],
)
def test_min_stride_fraction_holds_on_every_level(method, settings):
    strides, fraction = [8, 16, 32], 1.5  # 12, 24 and 48 px: above most of the mixture's small shapes
    free = fit_anchors(mixture(1500), 6, method, levels=3, **settings)
    fit = fit_anchors(
        mixture(1500), 6, method, levels=3, strides=strides, min_stride_fraction=fraction, **settings
    )
    floors = torch.tensor([strides[lv] * fraction for lv in fit.anchor_levels])[:, None]
    assert not bool((free.anchors >= floors).all())  # the constraint binds here
    assert bool((fit.anchors >= floors - 1e-4).all())
    if fit.path is not None:  # every step of the learned fit held it, not just the result
        for step in fit.path[1:].double():  # each row's level is its rank by area at that step
            torch.testing.assert_close(stride_floor(step, strides, fraction), step)
    assert fit.settings["min_stride_fraction"] == fraction


def test_stride_floor_keeps_levels_in_area_order():
    # A thin finest-level anchor raised to 4 px would outgrow the next level's smallest: the ranks
    # change, so the floor repeats until each row's level (its rank by area) holds its floor.
    wh = torch.tensor([[2.0, 100.0], [3.0, 3.0], [10.0, 21.0], [9.0, 30.0]])
    got = stride_floor(wh, [8, 16], 0.5)
    ranks = got.prod(-1).argsort(stable=True)
    floors = torch.tensor([4.0, 4.0, 8.0, 8.0])
    assert bool((got[ranks] >= floors[:, None]).all())
