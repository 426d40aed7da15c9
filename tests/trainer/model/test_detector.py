import pytest
import torch

from tests.helpers import small_config
from trainer.config import TrainConfig
from trainer.model.detector import Detector, ShiftFreeBatchNorm, YoloHead


def test_shift_free_batch_norm_has_no_bias_and_centres_outputs():
    bn = ShiftFreeBatchNorm(4)
    names = {n for n, _ in bn.named_parameters()}
    assert names == {"weight"}
    x = torch.randn(8, 4, 5, 5) * 3 + torch.tensor([5.0, -2.0, 40.0, 0.5]).view(1, 4, 1, 1)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 2.0, 1.0, 3.0]))
    y = bn.train()(x)
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std((0, 2, 3), unbiased=False), bn.weight.detach(), atol=1e-3, rtol=0)


def test_head_normalises_only_the_size_offsets():
    head = YoloHead(16, num_anchors=3, num_classes=2, bn_no_shift=True).train()
    x = torch.randn(4, 16, 6, 6) + 3
    out = head(x)  # [B, A, H, W, 5 + C]
    assert out.shape == (4, 3, 6, 6, 7)
    wh_means = out[..., 2:4].mean((0, 2, 3))  # per anchor and coordinate: centred
    torch.testing.assert_close(wh_means, torch.zeros(3, 2), atol=1e-5, rtol=0)
    assert out[..., 0:2].mean().abs() > 1e-3 or out[..., 4:].mean().abs() > 1e-3  # others untouched
    plain = YoloHead(16, 3, 2, bn_no_shift=False)
    assert plain.wh_norm is None


def test_objectness_starts_low():
    head = YoloHead(16, 3, 2, bn_no_shift=False)
    out = head(torch.zeros(1, 16, 2, 2))
    torch.testing.assert_close(out[..., 4].sigmoid(), torch.full((1, 3, 2, 2), 0.01), atol=1e-3, rtol=0)


def test_tiny_detector_shapes_and_anchors_are_parameters():
    cfg = small_config("model.image_size=64")
    model = Detector(cfg, torch.full((5, 2), 12.0), 3)
    pred, log_anchors = model(torch.rand(2, 3, 64, 64))
    assert model.stride == 16 and pred.shape == (2, 5, 4, 4, 5 + 3)
    torch.testing.assert_close(log_anchors, torch.full((5, 2), 12.0).log())
    assert log_anchors.requires_grad
    assert "anchors.log_wh" in model.state_dict()
    assert any(p is model.anchors.log_wh for p in model.parameters())


def test_frozen_detector_anchors():
    cfg = small_config("anchors.learn=false")
    model = Detector(cfg, torch.full((5, 2), 12.0), 3)
    _, log_anchors = model(torch.rand(1, 3, 64, 64))
    assert not log_anchors.requires_grad


def test_darknet19_detector_stride_32():
    cfg = TrainConfig.model_validate({"model": {"backbone": "darknet19", "image_size": 64}})
    model = Detector(cfg, torch.full((5, 2), 40.0), 3).eval()
    with torch.no_grad():
        pred, _ = model(torch.rand(1, 3, 64, 64))
    assert model.stride == 32 and pred.shape == (1, 5, 2, 2, 8)


def test_image_size_must_fit_the_stride():
    with pytest.raises(ValueError, match="multiple of the darknet19 stride"):
        TrainConfig.model_validate({"model": {"backbone": "darknet19", "image_size": 48}})
