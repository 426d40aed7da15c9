"""trainer.train.step: multi-scale training (darknet's random=1) resizes the batch, boxes and anchors."""

from __future__ import annotations

import math

import pytest
import torch

from tests.helpers import small_config
from tests.trainer.train.runs import fresh
from trainer.train.batches import epoch_batches
from trainer.train.step import input_size, resize_batch, train_step


def test_without_multiscale_the_input_is_the_image_size():
    state, _ = fresh(small_config())
    assert {input_size(state) for state.step in range(30)} == {64}


def test_sizes_are_stride_multiples_in_range_held_for_every_steps_and_seeded():
    cfg = small_config("model.multiscale.enabled=true", "model.multiscale.every_steps=5")
    state, _ = fresh(cfg)
    sizes = []
    for step in range(400):
        state.step = step
        sizes.append(input_size(state))
    low, high = cfg.multiscale_range
    assert (low, high) == (64 - 3 * 16, 64 + 6 * 16)  # darknet's 320-608 at 416 px and stride 32
    assert set(sizes) == set(range(low, high + 1, 16))  # every multiple of the stride in the range
    assert all(len(set(sizes[i : i + 5])) == 1 for i in range(0, 400, 5))
    again, _ = fresh(cfg)
    again.step = 123
    assert input_size(again) == sizes[123]  # a resumed run draws the same size


def test_darknets_range_at_416():
    cfg = small_config("model.backbone=darknet19", "model.image_size=416", "model.multiscale.enabled=true")
    assert cfg.multiscale_range == (320, 608)
    with pytest.raises(
        ValueError, match=r"model.multiscale.min_size=100 must be a multiple of the stride \(32\)"
    ):
        small_config("model.backbone=darknet19", "model.image_size=416", "model.multiscale.min_size=100")


def test_resize_scales_the_boxes_with_the_images():
    images = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    images[0, :, 16:32, 8:40] = 255
    targets = torch.tensor([[0, 1, 8.0, 16.0, 40.0, 32.0]])
    pixels, scaled, ratio = resize_batch(images, targets, 96)
    assert pixels.shape == (2, 3, 96, 96) and ratio == 1.5
    assert scaled[0, 2:].tolist() == [12.0, 24.0, 60.0, 48.0] and scaled[0, :2].tolist() == [0, 1]
    assert pixels[0, 0, 25:47, 13:59].min() > 0.99 and pixels[0, 0, :20].max() < 0.01
    same, kept, one = resize_batch(images, targets, 64)
    assert one == 1.0 and kept is targets and torch.equal(same, images.float() / 255)


def test_a_multiscale_step_runs_at_the_drawn_size_and_moves_the_anchors(monkeypatch):
    cfg = small_config("model.multiscale.enabled=true", "model.multiscale.every_steps=1")
    state, data = fresh(cfg)
    seen = []
    forward = state.model.forward
    monkeypatch.setattr(state.model, "forward", lambda x: seen.append(x.shape[-1]) or forward(x))
    before = state.model.anchors.log_wh.detach().clone()
    for step, (images, targets) in zip(range(12), epoch_batches(state, data), strict=False):
        assert input_size(state) == input_size(state)  # noqa: PLR0124 (a pure function of the step)
        expected = input_size(state)
        terms, _ = train_step(state, images, targets)
        assert seen[-1] == expected and math.isfinite(terms["total"]), step
    assert len(set(seen)) > 1 and not torch.equal(state.model.anchors.log_wh, before)
