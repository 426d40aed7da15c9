"""The closest mmdetection AnchorGenerator: its shapes by mmdetection's rule, recovered parameters,
reported numbers that recompute from the parameters it writes, and a fit on the real VOC07 boxes."""

from __future__ import annotations

import ast
import math

import pytest
import torch

from trainer.artifacts.anchor_generator import (
    anchor_generator_config,
    checked_strides,
    fit_anchor_generator,
    generator_shapes,
)
from trainer.fit.solver import fit_anchors
from trainer.model.anchors import anchor_fit
from trainer.model.levels import split_by_area

STRIDES = [8, 16, 32]


def mmdet_rule(octave_base_scale, scales_per_octave, ratios, strides) -> list[list[tuple[float, float]]]:
    """mmdetection's AnchorGenerator base anchors as (w, h), written out again here from its docs:
    base size = stride, scales octave_base_scale * 2^(i / scales_per_octave), ratio r = h / w."""
    levels = []
    for s in strides:
        shapes = []
        for r in ratios:
            for i in range(scales_per_octave):
                base = s * octave_base_scale * 2 ** (i / scales_per_octave)
                shapes.append((base / math.sqrt(r), base * math.sqrt(r)))
        levels.append(shapes)
    return levels


def config_kwargs(text: str) -> dict:
    """The keyword arguments of `anchor_generator=dict(...)`, read with ast (nothing is run)."""
    tree = ast.parse(text)
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Assign)
    (target,), call = tree.body[0].targets, tree.body[0].value
    assert target.id == "anchor_generator" and call.func.id == "dict" and not call.args
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def test_shapes_follow_mmdetections_rule():
    got = generator_shapes(4, 3, [0.5, 1.0, 2.0], STRIDES)
    expected = [wh for level in mmdet_rule(4, 3, [0.5, 1.0, 2.0], STRIDES) for wh in level]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    # RetinaNet's defaults at stride 8: squares of 32, 32 * 2^(1/3), 32 * 2^(2/3) px; ratio 2 is 2x taller.
    side = torch.tensor([32, 32 * 2 ** (1 / 3), 32 * 2 ** (2 / 3)], dtype=torch.float64)
    torch.testing.assert_close(got[3:6], side[:, None].expand(3, 2))
    w, h = got[6].tolist()
    assert h / w == pytest.approx(2.0) and w * h == pytest.approx(32 * 32)


@pytest.mark.parametrize(
    ("scale", "spo", "ratios"),
    [(4.0, 3, [0.5, 1.0, 2.0]), (8.0, 1, [0.5, 1.0, 2.0]), (5.37, 1, [0.4, 1.3, 2.9]), (2.5, 2, [0.7, 1.6])],
)
def test_anchors_made_by_a_generator_are_recovered(scale, spo, ratios):
    anchors = generator_shapes(scale, spo, ratios, STRIDES)  # level after level, finest first
    fit = fit_anchor_generator(anchors, STRIDES)
    assert fit["scales_per_octave"] == spo and fit["anchors_per_location"] == spo * len(ratios)
    assert fit["octave_base_scale"] == pytest.approx(scale, abs=0.011)
    assert fit["ratios"] == pytest.approx(ratios, abs=0.011)
    assert fit["measured_on"] == "anchors" and fit["targets"] == len(anchors)
    assert fit["generator"]["mean_best_iou"] > 0.999 and fit["generator"]["bpr"] == 1.0


def _check_reported_numbers_recompute(fit: dict, learned: torch.Tensor, targets: torch.Tensor) -> None:
    shapes = mmdet_rule(fit["octave_base_scale"], fit["scales_per_octave"], fit["ratios"], fit["strides"])
    shapes = torch.tensor([wh for level in shapes for wh in level])
    torch.testing.assert_close(torch.tensor(fit["anchors"]), shapes, rtol=0, atol=0.001)
    assert fit["generator"] == pytest.approx(anchor_fit(shapes, targets), abs=1e-6)
    assert fit["learned"] == pytest.approx(anchor_fit(learned, targets), abs=1e-6)


def _mixture(n: int = 3000) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[12.0, 20.0], [40.0, 25.0], [60.0, 120.0], [200.0, 150.0]])
    pick = torch.randint(len(centres), (n,), generator=gen)
    return centres[pick] * torch.exp(0.15 * torch.randn(n, 2, generator=gen))


def test_reported_numbers_recompute_from_the_written_parameters():
    boxes = _mixture(6000)  # more than the search's sample: the report is on every box
    shapes = torch.tensor([[12.0, 20], [40, 25], [30, 30], [60, 120], [200, 150], [90, 80]])
    learned = torch.cat(split_by_area(shapes, 3))
    fit = fit_anchor_generator(learned, STRIDES, boxes)
    assert fit["measured_on"] == "boxes" and fit["targets"] == 6000 and fit["strides"] == STRIDES
    assert fit["anchors_per_location"] == 2
    _check_reported_numbers_recompute(fit, learned, boxes)


def test_the_config_entry_parses_to_the_fit():
    fit = fit_anchor_generator(generator_shapes(4.0, 3, [0.5, 1.0, 2.0], STRIDES), STRIDES)
    text = anchor_generator_config(fit)
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert "mean best IoU 1.0000" in comments[1] and "BPR 1.0000" in comments[1]
    assert config_kwargs(text) == {
        "type": "AnchorGenerator",
        "octave_base_scale": 4.0,
        "scales_per_octave": 3,
        "ratios": [0.5, 1.0, 2.0],
        "strides": [8, 16, 32],
    }


@pytest.mark.parametrize(
    ("strides", "message"),
    [([16, 8], "ascending"), ([8, 8], "ascending"), ([0], "positive"), ([], "non-empty"), (True, "an int")],
)
def test_bad_strides_are_refused(strides, message):
    with pytest.raises(ValueError, match=message):
        checked_strides(strides)


def test_anchors_that_do_not_split_into_levels_are_refused():
    with pytest.raises(ValueError, match="8 anchors do not split into 3 levels"):
        fit_anchor_generator(torch.ones(8, 2), STRIDES)


def test_voc07_fit_beats_mmdetections_default_patterns(voc07_boxes):
    boxes = voc07_boxes
    learned = torch.cat(split_by_area(fit_anchors(boxes, 9, "kmeans").anchors, 3))
    defaults = {3: (8, 1, [0.5, 1.0, 2.0]), 9: (4, 3, [0.5, 1.0, 2.0])}  # Faster R-CNN's, RetinaNet's
    for per_location, default in defaults.items():
        fit = fit_anchor_generator(learned, STRIDES, boxes, per_location=per_location)
        assert fit["targets"] == len(boxes) and fit["anchors_per_location"] <= per_location
        _check_reported_numbers_recompute(fit, learned, boxes)
        default_iou = anchor_fit(generator_shapes(*default, STRIDES), boxes)["mean_best_iou"]
        assert fit["generator"]["mean_best_iou"] >= default_iou
