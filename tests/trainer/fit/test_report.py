"""The `anchor-opt fit` report: anchor lists as people paste them, the JSON, the tables, the picture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from rich.console import Console

from trainer.artifacts.exports import anchor_exports
from trainer.data.records import DetectionSet, ImageRecord
from trainer.fit.anchor_lists import parse_anchor_list, parse_compare, resolve_compare
from trainer.fit.report import build_report, draw, print_report, summary_rows
from trainer.fit.solver import fit_anchors
from trainer.model.anchors import FIT_METRICS, anchor_fit

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
    assert parse_compare("yolov5=autoanchor") == ("yolov5", "autoanchor")
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
    records.append(ImageRecord.build("thin.jpg", 640, 480, [[0, 0, 2, 30]], [0]))  # 1.3 x 19.5 px: fitted
    records.append(ImageRecord.build("tiny.jpg", 640, 480, [[0, 0, 2, 2]], [0]))  # 1.3 x 1.3 px: left out
    return DetectionSet("small (test)", "coco", records, ["cat", "dog"])


def test_report_holds_every_set_with_the_three_metrics_and_exports():
    data = small_set()
    boxes = data.boxes_wh(416)
    fit = fit_anchors(boxes, 4, "learned")
    compare = resolve_compare([("mine", [(10.0, 10.0), (100.0, 100.0)]), ("kmeans", "kmeans")], boxes, 4, 0)
    report = build_report(data.summary(), boxes, fit, compare, image_size=416)
    assert list(report["sets"]) == ["init (uniform)", "learned", "mine", "kmeans"]
    for s in report["sets"].values():
        assert set(s["metrics"]) == set(FIT_METRICS) and len(s["anchors"]) == len(s["anchors_cells"])
    assert len(report["sets"]["mine"]["anchors"]) == 2  # a compare set may have its own size
    assert report["boxes"] == {**report["boxes"], "total": 122, "used": 121, "left_out": 1, "metrics_on": 122}
    assert "w >= 2 px or h >= 2 px" in report["boxes"]["rule"]
    assert report["exports"]["darknet_yolo"].startswith("anchors = ")
    assert report["settings"]["temperature"] == 0.1 and report["fit"]["converged"]
    assert report["fit"]["objective"] == "log-space+iou-refine" and report["fit"]["refine"]["steps"] > 0
    assert report["settings"] | {"levels": 1, "strides": [32], "stride": 32} == report["settings"]
    json.dumps(report)  # JSON-ready as it is

    console = Console(record=True, width=100)
    print_report(console, report)
    text = console.export_text()
    assert all(key in text and meaning in text for key, meaning in FIT_METRICS.items())
    assert "darknet [region]" in text and "YOLOv5" in text and "mine" in text
    assert "all 122 boxes (121 fitted, 1 left out)" in text and "log-space+iou-refine" in text
    assert draw(report, boxes, fit, "small").startswith(PNG_MAGIC)


def test_metrics_are_on_all_boxes_and_the_report_says_which_were_fitted():
    data = small_set()
    boxes = data.boxes_wh(416)
    fit = fit_anchors(boxes, 4, "learned")
    report = build_report(data.summary(), boxes, fit, {}, image_size=416)
    got = report["sets"]["learned"]["metrics"]
    on_all = anchor_fit(fit.anchors, torch.as_tensor(boxes))
    assert got == {k: round(v, 4) for k, v in on_all.items()}
    assert sum(report["sets"]["learned"]["boxes_per_anchor"]) == 122  # every box, the left-out one too
    rows = summary_rows(report)
    assert rows["boxes fitted"].startswith("121 of 122 (1 left out: under 2 px in both w and h at 416 px)")


@pytest.mark.parametrize(("method", "objective"), [("kmeans", "kmeans-median"), ("autoanchor", "autoanchor")])
def test_kmeans_and_autoanchor_reports_have_no_init_set(method, objective):
    data = small_set()
    boxes = data.boxes_wh(416)
    fit = fit_anchors(boxes, 3, method)
    report = build_report(data.summary(), boxes, fit, {}, image_size=416)
    assert list(report["sets"]) == [method] and report["fit"]["steps"] is None
    assert report["fit"]["objective"] == objective and report["init"] is None
    console = Console(record=True, width=120)
    print_report(console, report)
    assert f"{method}: " in console.export_text()
    assert draw(report, boxes, fit).startswith(PNG_MAGIC)


def test_levels_in_the_report_each_anchor_on_its_level_with_its_stride():
    data = small_set()
    boxes = data.boxes_wh(416)
    fit = fit_anchors(boxes, 6, "learned", levels=3, min_stride_fraction=1.0)
    compare = resolve_compare([("five", [(10.0, 10.0)] * 5), ("kmeans", "kmeans")], boxes, 6, 0)
    report = build_report(data.summary(), boxes, fit, compare, image_size=416)
    s, mine = report["settings"], report["sets"]["learned"]
    expected = {"levels": 3, "strides": [8, 16, 32], "stride": None, "anchors": 6, "anchors_per_level": 2}
    assert s | expected == s
    assert mine["levels"] == [0, 0, 1, 1, 2, 2] and [lv["stride"] for lv in mine["per_level"]] == [8, 16, 32]
    for (w, h), (cw, ch), lv in zip(mine["anchors"], mine["anchors_cells"], mine["levels"], strict=True):
        stride = [8, 16, 32][lv]
        assert (cw, ch) == pytest.approx((w / stride, h / stride), abs=1e-3)  # w, h rounded to 0.01 px
        assert min(w, h) >= stride - 0.01
    assert sum(lv["boxes"] for lv in mine["per_level"]) == 122
    assert report["sets"]["kmeans"]["levels"] == [0, 0, 1, 1, 2, 2]
    assert report["sets"]["five"]["levels"] is None  # 5 anchors do not split into 3 levels
    assert "P3/8" in report["exports"]["yolov5"] and "darknet_region" not in report["exports"]
    console = Console(record=True, width=140)
    print_report(console, report)
    text = console.export_text()
    assert "anchors per level" in text and "level (stride)" in text and ">= 1 x its stride" in text
    json.dumps(report)
    assert draw(report, boxes, fit).startswith(PNG_MAGIC)


def test_exports_in_cells_and_pixels():
    ex = anchor_exports(torch.tensor([[32.0, 64.0], [100.4, 50.4]]), stride=32)
    assert ex["darknet_region"] == "anchors = 1.0000,2.0000, 3.1375,1.5750"
    assert ex["darknet_yolo"] == "anchors = 32,64, 100,50"
    assert ex["yolov5"] == "anchors:\n  - [32,64, 100,50]"
