"""Darknet weights files: the layer order of yolo-voc.cfg, exact round trips, prefixes, refusals, and a
full file computing what darknet computes (its [reorg] order included)."""

from __future__ import annotations

import io
import struct

import pytest
import torch

from tests.helpers import small_config
from trainer.model.darknet_weights import (
    BACKBONE_LAYERS,
    DarknetFormatError,
    darknet_layers,
    read_darknet_weights,
    write_darknet_weights,
)
from trainer.model.detector import Detector

VOC_CLASSES = 20


def build(*overrides: str, classes: int = VOC_CLASSES) -> Detector:
    cfg = small_config("model.backbone=darknet19", "tricks.bn_no_shift=false", *overrides)
    return Detector(cfg, torch.full((5, 2), 10.0), classes).eval()


@pytest.fixture(scope="module")
def source() -> Detector:
    """A full darknet19 detector for VOC (yolo-voc's 125 outputs) with random weights and statistics."""
    torch.manual_seed(0)
    model = build()
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif tensor.is_floating_point() and key != "anchors.log_wh":
                tensor.normal_(0, 0.05)
    return model


@pytest.fixture(scope="module")
def full(source) -> bytes:
    buf = io.BytesIO()
    write_darknet_weights(source, buf, seen=12345)
    return buf.getvalue()


def read(data: bytes, model, where: str = "yolo-voc.weights"):
    return read_darknet_weights(io.BytesIO(data), len(data), model, where)


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_the_layers_are_yolo_voc_cfgs_convs_in_order(source):
    layers = darknet_layers(source)
    assert len(layers) == 23 and BACKBONE_LAYERS == 18
    shapes = [(lay.conv.in_channels, lay.conv.out_channels, lay.conv.kernel_size[0]) for lay in layers]
    assert shapes[:5] == [(3, 32, 3), (32, 64, 3), (64, 128, 3), (128, 64, 1), (64, 128, 3)]
    assert shapes[17] == (512, 1024, 3)  # the last conv of darknet19_448.conv.23
    assert shapes[18:20] == [(1024, 1024, 3), (1024, 1024, 3)]  # yolo-voc's two extra 3x3x1024
    assert (layers[20].name, shapes[20]) == ("backbone.passthrough", (512, 64, 1))
    assert (layers[21].name, shapes[21]) == ("backbone.fuse", (64 * 4 + 1024, 1024, 3))
    assert (layers[22].name, shapes[22]) == ("head.pred", (1024, 125, 1))
    assert layers[22].bn is None and all(lay.bn is not None for lay in layers[:22])
    # darknet's order within a layer: biases (BN beta), scales (gamma), rolling mean, variance, weights
    assert [k.rpartition(".")[2] for k, _ in layers[0].tensors] == [
        "bias", "weight", "running_mean", "running_var", "weight"
    ]  # fmt: skip
    assert [k for k, _ in layers[22].tensors] == ["head.pred.bias", "head.pred.weight"]


def test_a_full_file_reads_back_exactly(source, full):
    assert struct.unpack("<iiiq", full[:20]) == (0, 2, 0, 12345)
    target = build()
    got = read(full, target)
    assert (got.version, got.seen, got.total, got.head_skipped) == ((0, 2, 0), 12345, 23, None)
    assert len(got.loaded) == 23
    want, have = source.state_dict(), target.state_dict()
    assert len(got.keys) == 22 * 5 + 2
    for key in got.keys:
        assert torch.equal(want[key], have[key]), key


def test_an_old_header_with_a_32_bit_seen_count(source):
    buf = io.BytesIO()
    write_darknet_weights(source, buf, upto=2, version=(0, 1, 0), seen=7)
    data = buf.getvalue()
    assert struct.unpack("<iiii", data[:16]) == (0, 1, 0, 7)
    got = read(data, build())
    assert (got.version, got.seen, [lay.name for lay in got.loaded]) == (
        (0, 1, 0), 7, ["backbone.stage1.0", "backbone.stage1.2"]
    )  # fmt: skip


def test_a_backbone_file_loads_its_18_layers_and_nothing_else(source, full):
    """darknet19_448.conv.23: the first 23 cfg layers, 18 convs, as `darknet partial ... 23` writes it."""
    buf = io.BytesIO()
    write_darknet_weights(source, buf, upto=BACKBONE_LAYERS)
    target = build()
    before = snapshot(target)
    got = read(buf.getvalue(), target, "darknet19_448.conv.23")
    assert [lay.index for lay in got.loaded] == list(range(18)) and got.loaded[-1].name == "backbone.stage2.5"
    want, have = source.state_dict(), target.state_dict()
    loaded = set(got.keys)
    for key in have:
        assert torch.equal(have[key], want[key] if key in loaded else before[key]), key
    assert "backbone.stage2.6.0.weight" not in loaded and "head.pred.weight" not in loaded


@pytest.mark.parametrize(
    ("cut", "needle"),
    [
        (lambda full, at: full[: at(3) + 100], "ends 100 bytes into conv layer 3 (backbone.stage1.5"),
        (lambda full, at: full[:-10], "into conv layer 22 (head.pred"),
        (lambda full, at: full[:12], "too short for a darknet weights header"),
        (lambda full, at: full[:20], "a darknet header and no layer"),
        (lambda full, at: b"\xff\xd8\xff\xe0" + full[4:], "neither a torch file nor darknet"),  # a JPEG
    ],
)
def test_a_truncated_file_is_refused_naming_it_and_changes_nothing(source, full, cut, needle):
    layers = darknet_layers(source)

    def at(n: int) -> int:  # the byte where conv layer n starts
        return 20 + 4 * sum(lay.floats for lay in layers[:n])

    target = build()
    before = snapshot(target)
    with pytest.raises(DarknetFormatError, match=r"^/data/yolo-voc\.weights: ") as err:
        read(cut(full, at), target, "/data/yolo-voc.weights")
    assert needle in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_bytes_after_the_whole_model_are_refused(full):
    with pytest.raises(DarknetFormatError, match=r"^x\.weights: 4 bytes left over after all 23 conv layers"):
        read(full + b"\0" * 4, build(), "x.weights")


def test_another_architecture_is_refused(source):
    """darknet19_448.weights, the classifier: its 19th conv is 1x1x1000 (1024 in), not yolo's 3x3x1024."""
    buf = io.BytesIO()
    write_darknet_weights(source, buf, upto=BACKBONE_LAYERS)
    classifier = buf.getvalue() + torch.zeros(1000 + 1000 * 1024).numpy().tobytes()
    needle = r"^darknet19_448\.weights: ends 4100000 bytes into conv layer 18 \(backbone\.stage2\.6"
    with pytest.raises(DarknetFormatError, match=needle):
        read(classifier, build(), "darknet19_448.weights")


def test_a_head_for_other_classes_is_skipped_and_the_rest_loads(source, full):
    """yolo.weights (COCO): 425 outputs = 5 x (5 + 80), read into a 20-class model."""
    head = darknet_layers(source)[-1].floats * 4
    coco = full[:-head] + torch.randn(425 + 425 * 1024).numpy().tobytes()
    target = build()
    before = snapshot(target)
    got = read(coco, target, "yolo.weights")
    assert len(got.loaded) == 22 and "425 outputs (5 anchors x 80 classes)" in got.head_skipped
    assert "classes or anchors differ" in got.head_skipped
    assert torch.equal(target.head.pred.weight, before["head.pred.weight"])
    assert torch.equal(target.backbone.fuse[0].weight, source.backbone.fuse[0].weight)


def test_the_tiny_backbone_has_no_darknet_layout(full):
    tiny = Detector(small_config(), torch.full((5, 2), 10.0), 3)
    needle = r"^w\.weights: .*only model\.backbone: darknet19.*TinyBackbone"
    with pytest.raises(DarknetFormatError, match=needle):
        read(full, tiny, "w.weights")


def reference_darknet_reorg(x: torch.Tensor, stride: int = 2) -> torch.Tensor:
    """darknet's reorg_cpu(x, w, h, c, batch, stride, forward=0, out) on the layer's input dims, as
    forward_reorg_layer calls it, written out index by index; the result read as [4C, H/2, W/2]."""
    b_, c, h, w = x.shape
    flat, out = x.reshape(-1).tolist(), [0.0] * x.numel()
    out_c = c // (stride * stride)
    for b in range(b_):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2, offset = k % out_c, k // out_c
                    w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                    out[in_index] = flat[w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))]
    return torch.tensor(out).reshape(b_, c * stride * stride, h // stride, w // stride)


def test_a_full_file_computes_darknets_outputs(source, full):
    """With model.reorg: darknet, the loaded model equals darknet's graph: the convs of the file, and
    darknet's own reorg between the passthrough and the fuse conv (reference written from reorg_cpu)."""
    target = build("model.reorg=darknet")
    read(full, target)
    x = torch.rand(2, 3, 64, 64)
    bb = source.backbone
    with torch.no_grad():
        fine = bb.stage1(x)
        passthrough = bb.passthrough(fine)
        features = bb.fuse(torch.cat([reference_darknet_reorg(passthrough), bb.stage2(fine)], dim=1))
        want = source.head.pred(features).view(2, 5, 25, 2, 2).permute(0, 1, 3, 4, 2)
        got, _ = target(x)
        plain = build()
        read(full, plain)
        other, _ = plain(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(other, want, rtol=1e-4, atol=1e-5)  # space_to_depth is another graph


@pytest.mark.parametrize("shape", [(1, 4, 2, 2), (2, 8, 4, 6), (1, 64, 4, 4)])
def test_the_models_darknet_reorg_is_reorg_cpus(shape):
    from trainer.model.detector import darknet_reorg

    x = torch.randn(shape)
    assert torch.equal(darknet_reorg(x), reference_darknet_reorg(x))
