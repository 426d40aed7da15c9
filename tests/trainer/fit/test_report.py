"""The `anchor-opt fit` report: anchor lists as people paste them, the JSON, the tables, the picture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from rich.console import Console

from trainer.artifacts.exports import anchor_exports
from trainer.data.records import DetectionSet, ImageRecord
from trainer.fit.report import (
    build_report,
    draw,
    parse_anchor_list,
    parse_compare,
    print_report,
    resolve_compare,
)
from trainer.fit.solver import fit_anchors
from trainer.model.anchors import FIT_METRICS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "text",
    ["10,13, 16,30, 33,23", "[[10, 13], [16, 30], [33, 23]]", "[10,13, 16,30, 33,23]", "10 13\n16 30\n33 23"],
    ids=["darknet", "yaml-pairs", "yolov5", "whitespace"],
)
def test_anchor_lists_in_the_formats_people_paste(text):
    assert parse_anchor_list(text) == [(10.0, 13.0), (16.0, 30.0), (33.0, 23.0)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10,13, 16", "3 numbers"),
        ("10,13, abc,5", "'abc' is not a number"),
        ("10,-13", "positive"),
        ("", "0 numbers"),
    ],
)
def test_bad_anchor_lists_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_anchor_list(text)


def test_compare_specs_named_init_names_and_saved_reports(tmp_path):
    assert parse_compare("yolov2 voc=10,13, 16,30") == ("yolov2 voc", [(10.0, 13.0), (16.0, 30.0)])
    assert parse_compare("10,13") == (None, [(10.0, 13.0)])
    assert parse_compare("kmeans") == ("kmeans", "kmeans")
    saved = tmp_path / "earlier.json"
    saved.write_text(json.dumps({"result": "learned", "sets": {"learned": {"anchors": [[5, 6], [7, 8]]}}}))
    assert parse_compare(str(saved)) == ("earlier", [(5.0, 6.0), (7.0, 8.0)])
    with pytest.raises(ValueError, match="file not found"):
        parse_compare(str(tmp_path / "missing.json"))
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="not a report"):
        parse_compare(str(tmp_path / "other.json"))


def small_set(n_images: int = 40, seed: int = 0) -> DetectionSet:
    """Images of 640 x 480 with a few boxes each, built directly (no reader)."""
    rng = np.random.default_rng(seed)
    shapes = np.array([[30, 30], [60, 150], [200, 90], [400, 300]], dtype=float)
    records = []
    for i in range(n_images):
        wh = shapes[rng.integers(0, len(shapes), 3)] * np.exp(rng.normal(0, 0.1, (3, 2)))
        xy = rng.uniform(0, 100, (3, 2))
        boxes = np.concatenate([xy, np.minimum(xy + wh, [640, 480])], 1)
        records.append(ImageRecord.build(f"img{i}.jpg", 640, 480, boxes, rng.integers(0, 2, 3)))
    records.append(ImageRecord.build("tiny.jpg", 640, 480, [[0, 0, 2, 30]], [0]))  # 1.3 px wide at 416
    return DetectionSet("small (test)", "coco", records, ["cat", "dog"])


def test_report_holds_every_set_with_the_three_metrics_and_exports():
    data = small_set()
    boxes = data.boxes_wh(416)
    fit = fit_anchors(boxes, 4, "learned")
    compare = resolve_compare([("mine", [(10.0, 10.0), (100.0, 100.0)]), ("kmeans", "kmeans")], boxes, 4, 0)
    report = build_report(data.summary(), boxes, fit, compare, image_size=416, stride=32)
    assert list(report["sets"]) == ["init (uniform)", "learned", "mine", "kmeans"]
    for s in report["sets"].values():
        assert set(s["metrics"]) == set(FIT_METRICS) and len(s["anchors"]) == len(s["anchors_cells"])
    assert len(report["sets"]["mine"]["anchors"]) == 2  # a compare set may have its own size
    assert report["boxes"] == {**report["boxes"], "total": 121, "used": 120, "left_out": 1}
    assert report["exports"]["darknet_yolo"].startswith("anchors = ")
    assert report["settings"]["temperature"] == 0.1 and report["fit"]["converged"]
    json.dumps(report)  # JSON-ready as it is

    console = Console(record=True, width=100)
    print_report(console, report)
    text = console.export_text()
    assert all(key in text and meaning in text for key, meaning in FIT_METRICS.items())
    assert "darknet [region]" in text and "YOLOv5" in text and "mine" in text
    assert draw(report, boxes, fit, "small").startswith(PNG_MAGIC)


def test_kmeans_report_has_no_init_set():
    data = small_set()
    boxes = data.boxes_wh(416)
    fit = fit_anchors(boxes, 3, "kmeans")
    report = build_report(data.summary(), boxes, fit, {}, image_size=416, stride=32)
    assert list(report["sets"]) == ["kmeans"] and report["fit"]["steps"] is None
    assert draw(report, boxes, fit).startswith(PNG_MAGIC)


def test_exports_in_cells_and_pixels():
    ex = anchor_exports(torch.tensor([[32.0, 64.0], [100.4, 50.4]]), stride=32)
    assert ex["darknet_region"] == "anchors = 1.0000,2.0000, 3.1375,1.5750"
    assert ex["darknet_yolo"] == "anchors = 32,64, 100,50"
    assert ex["yolov5"] == "anchors:\n  - [32,64, 100,50]"
