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


def test_darknet_reorg_by_hand():
    """darknet's [reorg] stride=2 on a 4-channel 2x2 input x[c, y, x] = 4c + 2y + x, worked out from
    reorg_cpu(forward=0): out[i + 2j + 4k] = x_flat[(2i + k % 2) + 4 (2j + k // 2)]."""
    from trainer.model.detector import _space_to_depth, darknet_reorg

    x = torch.arange(16.0).reshape(1, 4, 2, 2)
    want = [0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7, 13, 15]
    assert darknet_reorg(x).shape == (1, 16, 1, 1) and darknet_reorg(x).flatten().tolist() == want
    assert _space_to_depth(x).flatten().tolist() == list(range(16))


def test_darknet_reorg_is_no_channel_permutation_of_space_to_depth():
    """Why model.reorg exists: darknet's order mixes positions, so no permutation of the fuse conv's
    input channels turns pixel_unshuffle into it."""
    from trainer.model.detector import _space_to_depth, darknet_reorg

    x = torch.randn(1, 8, 4, 6)
    ours, theirs = _space_to_depth(x)[0], darknet_reorg(x)[0]
    matched = [any(torch.equal(theirs[c], ours[q]) for q in range(len(ours))) for c in range(len(theirs))]
    assert not any(matched)
    assert sorted(theirs.flatten().tolist()) == sorted(x.flatten().tolist())  # the same values, moved


def test_model_reorg_chooses_the_passthroughs_fold():
    cfg = small_config("model.backbone=darknet19", "model.reorg=darknet")
    assert Detector(cfg, torch.full((5, 2), 10.0), 3).backbone.reorg == "darknet"
    with pytest.raises(ValueError, match="model.reorg"):
        TrainConfig.model_validate({"model": {"reorg": "pixel_shuffle"}})


@pytest.mark.parametrize(
    ("backbone", "levels"), [("tiny", [8, 16, 32]), ("tiny", [16, 32, 64]), ("darknet19", [8, 16, 32])]
)
def test_a_detector_on_levels_predicts_at_each_stride_with_its_anchors(backbone, levels):
    cfg = small_config(f"model.backbone={backbone}", f"model.levels={levels}", "model.image_size=64")
    assert cfg.anchors.num == 3 and cfg.total_anchors == 9  # three a level when anchors.num is not given
    model = Detector(cfg, torch.arange(1.0, 10.0)[:, None].expand(9, 2) * 4, 2)
    preds, log_anchors = model(torch.rand(2, 3, 64, 64))
    assert [tuple(p.shape) for p in preds] == [(2, 3, 64 // s, 64 // s, 7) for s in levels]
    assert model.strides == levels and model.stride == max(levels) and log_anchors.shape == (9, 2)
    names = list(model.state_dict())
    assert len(names) == len(set(names)) and not any(n.startswith("neck.backbone") for n in names)
    assert sum(1 for n in names if n.startswith("heads.") and n.endswith("pred.weight")) == 3
    sum(p.sum() for p in preds).backward()  # every head and the neck are in the graph
    assert all(p.grad is not None for n, p in model.named_parameters() if n != "anchors.log_wh")


def test_one_level_keeps_the_yolov2_layout_and_state_dict():
    cfg = small_config()
    names = set(Detector(cfg, torch.full((5, 2), 12.0), 3).state_dict())
    assert "head.pred.weight" in names and not any(n.startswith(("neck.", "heads.")) for n in names)


def test_anchor_count_must_match_the_levels():
    cfg = small_config("model.levels=[8, 16]")
    with pytest.raises(ValueError, match="5 anchors for 2 level"):
        Detector(cfg, torch.full((5, 2), 12.0), 3)
