"""Anchors and weights as other tools read them: darknet, YOLOv5, mmdetection, and our own weights file."""

from __future__ import annotations

import io
import json

import pytest
import torch
import yaml

from tests.helpers import small_config
from trainer.artifacts.exports import anchor_exports, load_weights, weights_bytes, write_anchor_artifacts
from trainer.contract.layout import ANCHORS_CFG_KEY, ANCHORS_JSON_KEY, ANCHORS_YAML_KEY, WEIGHTS_KEY
from trainer.contract.writer import RunWriter
from trainer.model.detector import Detector

ANCHORS = torch.tensor([[12.4, 12.6], [16.0, 40.2], [41.5, 18.0]])  # px at a 128 px input, stride 16


def test_darknet_lines_in_cells_and_pixels():
    ex = anchor_exports(ANCHORS, stride=16)
    assert ex["darknet_region"] == "anchors = 0.7750,0.7875, 1.0000,2.5125, 2.5938,1.1250"
    assert ex["darknet_yolo"] == "anchors = 12,13, 16,40, 42,18"
    assert set(ex) == {"darknet_region", "darknet_yolo", "yolov5", "mmdet"}


def test_yolov5_and_mmdet_snippets_parse_to_what_the_tools_expect():
    ex = anchor_exports(ANCHORS, stride=16)
    # YOLOv5: a list of output levels, each a flat list of integer w, h, w, h, ...
    assert yaml.safe_load(ex["yolov5"]) == {"anchors": [[12, 13, 16, 40, 42, 18]]}
    # mmdetection: one stride per level, base_sizes a list of levels of [w, h] pairs.
    assert yaml.safe_load(ex["mmdet"]) == {
        "anchor_generator": {
            "type": "YOLOAnchorGenerator",
            "strides": [16],
            "base_sizes": [[[12, 13], [16, 40], [42, 18]]],
        }
    }


def test_tiny_anchors_never_export_a_zero_pixel_size():
    ex = anchor_exports(torch.tensor([[0.3, 0.5], [2.5, 7.0]]), stride=32)
    assert ex["darknet_yolo"] == "anchors = 1,1, 2,7"
    assert yaml.safe_load(ex["mmdet"])["anchor_generator"]["base_sizes"] == [[[1, 1], [2, 7]]]


@pytest.mark.parametrize(
    "bad",
    [torch.tensor([[10.0, float("nan")]]), torch.tensor([[10.0, -1.0]]), torch.ones(3), torch.ones(0, 2)],
)
def test_anchors_that_no_tool_could_read_are_refused(bad):
    with pytest.raises(ValueError, match="anchors must be"):
        anchor_exports(bad, stride=16)


def test_anchor_artifacts_are_written_and_each_parses(tmp_path):
    writer = RunWriter(tmp_path)
    fit = {"mean_best_iou": 0.71, "bpr": 0.98}
    keys = write_anchor_artifacts(writer, ANCHORS, stride=16, image_size=128, fit=fit)
    assert keys == {
        "anchors_json": ANCHORS_JSON_KEY,
        "anchors_yaml": ANCHORS_YAML_KEY,
        "anchors_cfg": ANCHORS_CFG_KEY,
    }
    ex = anchor_exports(ANCHORS, 16)

    doc = json.loads(writer.read_bytes(ANCHORS_JSON_KEY))
    assert doc["image_size"] == 128 and doc["stride"] == 16 and doc["fit"] == fit and doc["exports"] == ex
    assert doc["anchors"] == [[12.4, 12.6], [16.0, 40.2], [41.5, 18.0]]
    assert doc["anchors_cells"] == [[0.775, 0.7875], [1.0, 2.5125], [2.5938, 1.125]]

    text = writer.read_bytes(ANCHORS_YAML_KEY).decode()
    assert text.startswith("# ")
    loaded = yaml.safe_load(text)
    assert loaded == {
        "image_size": 128,
        "stride": 16,
        "anchors": [[12.4, 12.6], [16.0, 40.2], [41.5, 18.0]],
        "yolov5": yaml.safe_load(ex["yolov5"]),
        "mmdet": yaml.safe_load(ex["mmdet"]),
    }
    assert loaded["yolov5"]["anchors"] == [[12, 13, 16, 40, 42, 18]]
    assert loaded["mmdet"]["anchor_generator"]["strides"] == [16]

    lines = writer.read_bytes(ANCHORS_CFG_KEY).decode().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("# [region]") and "16 px" in lines[0] and "128 px" in lines[0]
    assert lines[1] == ex["darknet_region"]
    assert lines[2].startswith("# [yolo]") and "128 px" in lines[2]
    assert lines[3] == ex["darknet_yolo"]


def test_anchor_json_without_fit(tmp_path):
    writer = RunWriter(tmp_path)
    write_anchor_artifacts(writer, ANCHORS, stride=16, image_size=128)
    assert writer.read_json(ANCHORS_JSON_KEY)["fit"] is None


def _trained_looking_model():
    """A small Detector whose weights, batch-norm statistics and anchors are not the initial ones."""
    cfg = small_config("anchors.num=3")
    torch.manual_seed(0)
    model = Detector(cfg, torch.tensor([[10.0, 12.0], [20.0, 30.0], [40.0, 25.0]]), 3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.train()(torch.rand(4, 3, 64, 64))  # moves the running statistics
    return model.eval(), cfg


def test_weights_round_trip(tmp_path):
    model, cfg = _trained_looking_model()
    writer = RunWriter(tmp_path)
    writer.write_bytes(WEIGHTS_KEY, weights_bytes(model, cfg, ["rectangle", "ellipse", "cross"]))

    loaded, loaded_cfg, names = load_weights(writer.read_bytes(WEIGHTS_KEY), where=WEIGHTS_KEY)
    assert loaded_cfg == cfg and names == ["rectangle", "ellipse", "cross"]
    assert loaded.num_classes == 3 and not loaded.training
    torch.testing.assert_close(loaded.anchors.wh(), model.anchors.wh(), rtol=0, atol=0)
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected, expected_log = model(images)
        got, got_log = loaded(images)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    torch.testing.assert_close(got_log, expected_log, rtol=0, atol=0)


def test_weights_file_holds_the_anchors_readable_without_the_model():
    model, cfg = _trained_looking_model()
    payload = torch.load(io.BytesIO(weights_bytes(model, cfg, ["a", "b", "c"])), weights_only=True)
    assert payload["format"] == "anchor-opt-weights" and payload["version"] == 1
    torch.testing.assert_close(payload["anchors_px"], model.anchors.wh().detach())


def _saved(changes: dict | None) -> bytes:
    """A weights file with `changes` over its payload; None gives bytes that are no torch file at all."""
    if changes is None:
        return b"not a torch file"
    model, cfg = _trained_looking_model()
    payload = torch.load(io.BytesIO(weights_bytes(model, cfg, ["a", "b", "c"])), weights_only=True)
    buffer = io.BytesIO()
    torch.save(payload | changes, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (None, "not an anchor-opt weights file"),
        ({"format": "something-else"}, "not an anchor-opt weights file"),
        ({"version": 2}, "weights version 2 is not 1"),
        ({"num_classes": 5}, "cannot rebuild the model"),
    ],
    ids=["garbage", "format", "version", "mismatch"],
)
def test_bad_weights_name_where_they_came_from(changes, message):
    with pytest.raises(ValueError, match=message) as err:
        load_weights(_saved(changes), where="s3://bucket/run/artifacts/weights.pt")
    assert str(err.value).startswith("s3://bucket/run/artifacts/weights.pt: ")
