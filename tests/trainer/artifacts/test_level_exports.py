"""Exports of a model with several levels, each parsed by its tool's own rules: YOLOv5's yaml block,
darknet's [yolo] sections, mmdetection's and mmyolo's Python config entries, and the artifact files."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
import yaml

from trainer.artifacts.exports import anchor_exports, write_anchor_artifacts
from trainer.contract.layout import ANCHORS_CFG_KEY, ANCHORS_JSON_KEY, ANCHORS_YAML_KEY
from trainer.contract.writer import RunWriter
from trainer.fit.solver import fit_anchors
from trainer.model.anchors import anchor_fit
from trainer.model.levels import split_by_area

ANCHORS = torch.tensor([[12.4, 12.6], [16.0, 40.2], [41.5, 18.0]])  # one level, px at 128, stride 16

STRIDES = [8, 16, 32]
LEVELS = torch.tensor(  # px at a 416 px input, level after level (finest first), each level by area
    [[10.4, 13.2], [16.0, 30.4], [33.3, 22.8], [30.2, 61.0], [62.4, 45.1], [59.0, 118.6]]
    + [[116.2, 90.0], [156.0, 198.4], [373.3, 325.6]]
)
WHOLE = [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198], [373, 326]]


def _boxes() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    pick = torch.randint(len(LEVELS), (500,), generator=gen)
    return LEVELS[pick] * torch.exp(0.2 * torch.randn(500, 2, generator=gen))


def darknet_sections(text: str) -> list[tuple[str, dict[str, str]]]:
    """A cfg read by darknet's rules (src/parser.c read_cfg): every whitespace character is removed
    from a line; empty lines and lines starting with # or ; are skipped; [name] opens a section; any
    other line must be key=value (darknet stops at a line it cannot read, so this asserts)."""
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in text.splitlines():
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            assert line.endswith("]"), raw
            sections.append((line[1:-1], {}))
            continue
        assert "=" in line and sections, f"darknet cannot read {raw!r}"
        key, value = line.split("=", 1)
        sections[-1][1][key] = value
    return sections


def _check_yolo_sections(text: str) -> None:
    """Each [yolo] section: num and every anchor, mask picking exactly its level; coarsest first."""
    sections = darknet_sections(text)
    assert [name for name, _ in sections] == ["yolo"] * 3
    section_strides = []
    for _, keys in sections:
        values = [int(v) for v in keys["anchors"].split(",")]
        pairs = [values[i : i + 2] for i in range(0, len(values), 2)]
        mask = [int(m) for m in keys["mask"].split(",")]
        assert int(keys["num"]) == len(pairs) == 9 and pairs == WHOLE
        level = mask[0] // 3
        assert mask == [3 * level, 3 * level + 1, 3 * level + 2]
        assert [pairs[m] for m in mask] == WHOLE[3 * level : 3 * level + 3]
        section_strides.append(STRIDES[level])
    assert section_strides == [32, 16, 8]  # darknet's yolov3.cfg order: mask 6,7,8 first


def _check_mmdet(ex: dict[str, str]) -> None:
    """YOLOAnchorGenerator as mmdetection's yolov3 configs: levels coarsest first, strides [32, 16, 8],
    each level's base_sizes the anchors of that stride, the same number on every level."""
    tree = ast.parse(ex["mmdet_py"])
    (assign,) = tree.body
    assert assign.targets[0].id == "anchor_generator" and assign.value.func.id == "dict"
    kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in assign.value.keywords}
    assert kwargs["type"] == "YOLOAnchorGenerator" and kwargs["strides"] == [32, 16, 8]
    assert len({len(level) for level in kwargs["base_sizes"]}) == 1
    for stride, sizes in zip(kwargs["strides"], kwargs["base_sizes"], strict=True):
        level = STRIDES.index(stride)
        assert [list(wh) for wh in sizes] == WHOLE[3 * level : 3 * level + 3]
    assert yaml.safe_load(ex["mmdet"]) == {
        "anchor_generator": {
            "type": "YOLOAnchorGenerator",
            "strides": kwargs["strides"],
            "base_sizes": [[list(wh) for wh in level] for level in kwargs["base_sizes"]],
        }
    }


def test_yolov5_block_lists_levels_p3_first_as_yolov5s_yaml():
    ex = anchor_exports(LEVELS, STRIDES)
    assert yaml.safe_load(ex["yolov5"]) == {"anchors": [sum(WHOLE[i : i + 3], []) for i in (0, 3, 6)]}
    assert ex["yolov5"].splitlines() == [
        "anchors:",
        "  - [10,13, 16,30, 33,23]  # P3/8",
        "  - [30,61, 62,45, 59,119]  # P4/16",
        "  - [116,90, 156,198, 373,326]  # P5/32",
    ]
    assert set(ex) == {"darknet_yolo", "yolov5", "mmdet", "mmdet_py", "mmyolo", "mmdet_anchor_generator"}


def test_darknet_yolo_sections_read_by_darknets_rules():
    _check_yolo_sections(anchor_exports(LEVELS, STRIDES)["darknet_yolo"])


def test_mmdet_yolo_anchor_generator_in_mmdetections_order():
    _check_mmdet(anchor_exports(LEVELS, STRIDES))


def test_mmyolo_anchors_and_strides_finest_first():
    """mmyolo's YOLOv5 configs: `anchors` a list of levels of (w, h) tuples, P3 first, and `strides`."""
    tree = ast.parse(anchor_exports(LEVELS, STRIDES)["mmyolo"])
    names = {a.targets[0].id: ast.literal_eval(a.value) for a in tree.body}
    levels = [[tuple(wh) for wh in WHOLE[i : i + 3]] for i in (0, 3, 6)]
    assert names == {"anchors": levels, "strides": STRIDES}


def test_one_level_given_as_a_list_is_the_one_level_export():
    assert anchor_exports(ANCHORS, [16]) == anchor_exports(ANCHORS, 16) == anchor_exports(ANCHORS, stride=16)


@pytest.mark.parametrize(
    ("anchors", "kwargs", "message"),
    [
        (LEVELS[:8], {"strides": STRIDES}, "8 anchors do not split into 3 levels"),
        (LEVELS, {"strides": [32, 16, 8]}, "ascending"),
        (LEVELS, {"strides": STRIDES, "stride": 8}, "not both"),
        (LEVELS, {}, "not both"),
    ],
)
def test_levels_that_do_not_fit_the_anchors_are_refused(anchors, kwargs, message):
    with pytest.raises(ValueError, match=message):
        anchor_exports(anchors, **kwargs)


def test_level_artifacts_are_written_and_each_parses(tmp_path):
    writer = RunWriter(tmp_path)
    boxes = _boxes()
    fit = {"mean_best_iou": 0.71, "bpr": 0.98}
    write_anchor_artifacts(writer, LEVELS, STRIDES, 416, fit, boxes)
    ex = anchor_exports(LEVELS, STRIDES, boxes)

    doc = json.loads(writer.read_bytes(ANCHORS_JSON_KEY))
    assert "stride" not in doc and doc["strides"] == STRIDES and doc["image_size"] == 416
    assert doc["levels"] == [0, 0, 0, 1, 1, 1, 2, 2, 2] and doc["fit"] == fit and doc["exports"] == ex
    assert doc["anchors"] == [[round(w, 3), round(h, 3)] for w, h in LEVELS.double().tolist()]
    assert [level["stride"] for level in doc["per_level"]] == STRIDES
    assert sum((level["anchors"] for level in doc["per_level"]), []) == doc["anchors"]
    assert doc["per_level"][2]["anchors_cells"][0] == [round(w / 32, 4) for w in LEVELS.double()[6].tolist()]
    generator = doc["anchor_generator"]
    assert generator["measured_on"] == "boxes" and generator["targets"] == 500
    assert generator["strides"] == STRIDES and f"strides={STRIDES}" in ex["mmdet_anchor_generator"]

    text = writer.read_bytes(ANCHORS_YAML_KEY).decode()
    assert text.startswith("# ")
    loaded = yaml.safe_load(text)
    assert loaded == {
        "image_size": 416,
        "strides": STRIDES,
        "levels": doc["levels"],
        "anchors": doc["anchors"],
        "yolov5": yaml.safe_load(ex["yolov5"]),
        "mmdet": yaml.safe_load(ex["mmdet"]),
        "mmdet_py": ex["mmdet_py"],  # Python config entries, as literal blocks read back unchanged
        "mmyolo": ex["mmyolo"],
        "mmdet_anchor_generator": ex["mmdet_anchor_generator"],
    }
    assert loaded["mmdet"]["anchor_generator"]["strides"] == [32, 16, 8]

    cfg = writer.read_bytes(ANCHORS_CFG_KEY).decode()
    assert cfg.startswith("# [yolo]") and "416 px" in cfg and cfg.endswith(ex["darknet_yolo"] + "\n")
    _check_yolo_sections(cfg)


def test_the_exports_page_shows_the_real_voc07_export(voc07_boxes, tmp_path):
    """docs/exports.md pastes the export of 9 k-means anchors on VOC07 at 416 px, strides 8/16/32:
    each block there must still be what the code writes (regenerate the page's blocks if not)."""
    boxes = voc07_boxes
    anchors = torch.cat(split_by_area(fit_anchors(boxes, 9, "kmeans").anchors, 3))
    writer = RunWriter(tmp_path)
    write_anchor_artifacts(writer, anchors, STRIDES, 416, anchor_fit(anchors, boxes), boxes)
    ex = writer.read_json(ANCHORS_JSON_KEY)["exports"]

    page = (Path(__file__).resolve().parents[3] / "docs" / "exports.md").read_text()
    blocks = [b.split("\n", 1)[1].rstrip("\n") for b in page.split("```")[1::2]]
    assert ex["yolov5"] in blocks and ex["mmdet_py"] in blocks and ex["mmyolo"] in blocks
    assert ex["mmdet_anchor_generator"] in blocks
    assert writer.read_bytes(ANCHORS_CFG_KEY).decode().rstrip("\n") in blocks
