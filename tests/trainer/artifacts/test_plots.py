"""The pictures: each is a real, non-blank PNG, and odd inputs do not crash them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.image import imread

from trainer.artifacts.plots import plot_anchors, plot_losses

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_real_png(data: bytes) -> None:
    """`data` is a PNG of more than a few bytes whose pixels are not all one colour."""
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 5_000
    pixels = imread(io.BytesIO(data), format="png")
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert float(pixels[..., :3].std()) > 0


def mixture_boxes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = np.array([[12, 10], [20, 40], [48, 24], [40, 70], [90, 60]], dtype=float)
    boxes = shapes[rng.integers(0, len(shapes), n)] * np.exp(rng.normal(0, 0.15, (n, 2)))
    return boxes, shapes


def anchor_paths(shapes: np.ndarray, steps: int) -> np.ndarray:
    """[T, A, 2]: identical 25x25 anchors moving in log space to `shapes` over `steps` snapshots."""
    t = np.linspace(0.0, 1.0, steps)[:, None, None]
    return np.exp(np.log(25.0) * (1 - t) + np.log(shapes)[None] * t)


def test_anchors_full_picture() -> None:
    boxes, shapes = mixture_boxes(2000)
    png = plot_anchors(boxes, anchor_paths(shapes, 20), image_size=128, true_shapes=shapes)
    assert_real_png(png)


def test_anchors_zero_boxes() -> None:
    _, shapes = mixture_boxes(1)
    png = plot_anchors(np.zeros((0, 2)), anchor_paths(shapes, 5), image_size=128)
    assert_real_png(png)


def test_anchors_one_snapshot_one_anchor() -> None:
    boxes, _ = mixture_boxes(300)
    png = plot_anchors(boxes, np.array([[[25.0, 25.0]]]), image_size=128, title="one anchor")
    assert_real_png(png)


def test_anchors_one_anchor_many_snapshots_accepts_lists() -> None:
    boxes, _ = mixture_boxes(50)
    path = [[[25.0, 25.0]], [[30.0, 20.0]], [[33.0, 18.0]]]  # T=3, A=1, as nested lists
    png = plot_anchors(boxes.tolist(), path, image_size=64, true_shapes=[[32, 16]])
    assert_real_png(png)


def test_anchors_single_snapshot_as_a_by_2() -> None:
    boxes, shapes = mixture_boxes(100)
    png = plot_anchors(boxes, shapes, image_size=128)  # [A, 2] is read as T=1
    assert_real_png(png)


def test_anchors_many_anchors_and_out_of_range_boxes() -> None:
    boxes, _ = mixture_boxes(500)
    boxes = np.concatenate([boxes, [[0.0, 5.0], [np.nan, 3.0], [5000.0, 4000.0]]])  # dropped or clipped
    paths = np.exp(np.random.default_rng(1).uniform(np.log(4), np.log(120), (4, 15, 2)))
    png = plot_anchors(boxes, paths, image_size=128)
    assert_real_png(png)


def test_anchors_picture_follows_the_paths() -> None:
    boxes, shapes = mixture_boxes(200)
    first = plot_anchors(boxes, anchor_paths(shapes, 2), image_size=128)
    png = plot_anchors(boxes, anchor_paths(shapes, 10), image_size=128)
    assert_real_png(png)
    assert png != first  # more snapshots, another picture


def test_anchors_rejects_bad_paths() -> None:
    with pytest.raises(ValueError):
        plot_anchors(np.zeros((0, 2)), np.ones((3, 4, 3)), image_size=128)


def loss_history(steps: int, warmup: int) -> list[dict[str, float]]:
    history = []
    for step in range(0, steps, 10):
        decay = float(np.exp(-step / 200))
        entry = {"step": step, "xy": 0.2 + 0.5 * decay, "wh": 0.1 + decay, "obj": 0.3 + 0.6 * decay}
        entry |= {"noobj": 0.05 + 0.3 * decay, "cls": 0.1 + 0.8 * decay}
        if step < warmup:
            entry["cluster"] = 0.5 * decay
        entry["total"] = sum(v for k, v in entry.items() if k != "step")
        history.append(entry)
    return history


def test_losses_with_warmup() -> None:
    png = plot_losses(loss_history(800, warmup=200), warmup_steps=200)
    assert_real_png(png)


def test_losses_empty_history() -> None:
    png = plot_losses([])
    assert_real_png(png)


def test_losses_keys_differ_between_entries() -> None:
    history = [
        {"step": 0, "total": 3.0, "cluster": 0.4},
        {"step": 10, "total": 2.5, "xy": 0.5},
        {"step": 20, "xy": 0.4, "wh": 0.9},
        {"step": 30, "total": 1.5, "wh": 0.7, "cls": 0.2},
    ]
    png = plot_losses(history, title="keys come and go", warmup_steps=5)
    assert_real_png(png)


def test_losses_non_positive_values_use_linear_axis() -> None:
    history = [{"step": s, "total": 1.0 - 0.1 * s, "xy": 0.0} for s in range(20)]
    png = plot_losses(history)
    assert_real_png(png)


def test_losses_single_entry() -> None:
    png = plot_losses([{"step": 1, "total": 2.0, "xy": 0.3}])
    assert_real_png(png)


@pytest.mark.parametrize(
    ("boxes", "paths"),
    [([[5000.0, 5000.0]], [[[3000.0, 3000.0]]]), ([[20.0, 20.0]], [[[20.0, 20.0]]]), ([], [[[0.5, 0.5]]])],
    ids=["beyond-4x-input", "all-same-shape", "sub-pixel-anchor"],
)
def test_anchors_degenerate_ranges(boxes: list, paths: list) -> None:
    png = plot_anchors(boxes, paths, image_size=128)
    assert_real_png(png)


def test_anchors_with_named_marker_sets() -> None:
    boxes, shapes = mixture_boxes(1000)
    sets = {
        "k-means": shapes * 1.2,
        "YOLOv2": [[10.0, 13.0], [16.0, 30.0], [33.0, 23.0]],
        "empty": np.zeros((0, 2)),
    }
    plain = plot_anchors(boxes, anchor_paths(shapes, 10), image_size=128)
    png = plot_anchors(
        boxes, anchor_paths(shapes, 10), image_size=128, marker_sets=sets,
        path_labels=("init (uniform)", "learned"), title="two lines\nof title", note="1000 boxes",
    )  # fmt: skip
    assert_real_png(png)
    assert png != plain
    # a set far outside the boxes widens the axes rather than falling off them
    far = plot_anchors(boxes, shapes, image_size=128, marker_sets={"far": [[400.0, 300.0]]})
    assert_real_png(far)


def _hue_pixels(data: bytes, colour) -> int:
    """How many pixels of the picture are within a small distance of `colour` (RGB in [0, 1])."""
    pixels = imread(io.BytesIO(data), format="png")[..., :3]
    return int((np.abs(pixels - np.asarray(colour[:3])).max(-1) < 0.02).sum())


def test_anchors_on_levels_are_coloured_by_level_and_each_stride_is_marked():
    from trainer.artifacts.plots import _level_colours

    boxes, _ = mixture_boxes(2000)
    paths = np.stack(
        [np.full((6, 2), 30.0), np.array([[8, 9], [12, 20], [25, 25], [40, 30], [60, 90], [120, 80.0]])]
    )
    levels, strides = [0, 0, 1, 1, 2, 2], [8, 16, 32]
    colours = _level_colours(levels)
    # a level's anchors share a hue family (blue, orange, green): red-blue order tells them apart
    assert colours[0][2] > colours[0][0] and colours[2][0] > colours[2][2] and colours[4][1] > colours[4][0]
    assert colours[0] != colours[1]  # and each anchor has its own shade
    picture = plot_anchors(boxes, paths, image_size=256, levels=levels, strides=strides)
    assert_real_png(picture)
    plain = plot_anchors(boxes, paths, image_size=256)
    assert picture != plain
    assert _hue_pixels(picture, colours[4]) > 20 and _hue_pixels(plain, colours[4]) == 0


def test_one_level_draws_exactly_the_figure_2_picture():
    boxes, shapes = mixture_boxes(2000)
    paths = np.stack([np.full((5, 2), 30.0), shapes])
    plain = plot_anchors(boxes, paths, image_size=128)
    assert plot_anchors(boxes, paths, image_size=128, levels=[0] * 5, strides=[16]) == plain
