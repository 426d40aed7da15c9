"""COCO reader: split and image-folder resolution, the bad-data policy, and the real coco128 / VOC JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.data import coco
from trainer.data.records import BadDataPolicy, DataError
from trainer.data.sources import open_dataset

CATEGORIES = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]  # unsorted, not contiguous


def write_image(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (120, 60, 30)).save(path)


def write_coco(root: Path, images: list[dict], annotations: list[dict], name="instances_train.json") -> Path:
    path = root / "annotations" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path


def ann(i: int, image_id: int, bbox, category_id: int = 3, **extra) -> dict:
    return {"id": 100 + i, "image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    """images/train/{a.png 100x80, b.jpg 60x40, c.png 50x50 (no annotations)}."""
    write_image(tmp_path / "images" / "train" / "a.png", 100, 80)
    write_image(tmp_path / "images" / "train" / "b.jpg", 60, 40)
    write_image(tmp_path / "images" / "train" / "c.png", 50, 50)
    images = [
        {"id": 1, "file_name": "a.png", "width": 100, "height": 80},
        {"id": 2, "file_name": "b.jpg", "width": 60, "height": 40},
        {"id": 3, "file_name": "c.png", "width": 50, "height": 50},
    ]
    annotations = [
        ann(0, 1, [10, 20, 30, 40], 3),
        ann(1, 1, [0.5, 1.5, 99.5, 78.5], 7, iscrowd=1),
        ann(2, 2, [5, 6, 7, 8], 7, ignore=1),
    ]
    write_coco(tmp_path, images, annotations)
    return tmp_path


def read(root: Path, split="train", skip_bad=False, check_images=True):
    policy = BadDataPolicy(skip_bad)
    return coco.read(root, split, policy, check_images), policy.report


def test_clean_set_exact_boxes_classes_and_flags(clean: Path):
    data, report = read(clean)
    assert data.format == "coco" and data.class_names == ["cat", "dog"]  # ids 3, 7 -> 0, 1
    assert [r.image for r in data.records] == [
        clean / "images" / "train" / n for n in ("a.png", "b.jpg", "c.png")
    ]
    a, b, c = data.records
    assert (a.width, a.height, b.width, b.height) == (100, 80, 60, 40)
    np.testing.assert_array_equal(a.boxes, np.array([[10, 20, 40, 60], [0.5, 1.5, 100, 80]], np.float32))
    assert a.classes.tolist() == [0, 1] and a.crowd.tolist() == [False, True] and not a.difficult.any()
    np.testing.assert_array_equal(b.boxes, [[5, 6, 12, 14]])
    assert b.classes.tolist() == [1] and b.difficult.tolist() == [True] and not b.crowd.any()
    assert c.boxes.shape == (0, 4) and c.classes.dtype == np.int64
    assert report.as_dict() == BadDataPolicy().report.as_dict()  # nothing clipped, dropped or skipped


def test_bad_boxes_are_clipped_or_dropped_and_counted(clean: Path):
    images = [{"id": 1, "file_name": "a.png", "width": 100, "height": 80}]
    bad = [[5, 5, 0, 10], [5, 5, -3, 10], [float("nan"), 5, 10, 10], [90, 70, 20, 20], [200, 200, 10, 10]]
    write_coco(clean, images, [ann(i, 1, b) for i, b in enumerate(bad)])  # json writes NaN
    data, report = read(clean)
    np.testing.assert_array_equal(data.records[0].boxes, [[90, 70, 100, 80]])
    assert (report.dropped_empty, report.dropped_invalid, report.clipped, report.dropped_outside) == (
        2,
        1,
        1,
        1,
    )


BAD_ANNOTATIONS = [
    (ann(0, 1, [1, 2, 3, 4], 93), r"annotation 1 \(id 100\): category_id 93 is not among the 2 categories"),
    (ann(0, 42, [1, 2, 3, 4]), r"annotation 1 \(id 100\): image_id 42 is not among the 3 images"),
    (
        ann(0, 1, [1, 2, 3]),
        r"annotation 1 \(id 100\): bbox must be 4 numbers \[x, y, width, height\], got \[1, 2, 3\]",
    ),
    (ann(0, 1, [1, "2", 3, 4]), r"annotation 1 \(id 100\): bbox must be 4 numbers"),
    (ann(0, 1, None), r"annotation 1 \(id 100\): bbox must be 4 numbers"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_ANNOTATIONS)
def test_bad_annotation_names_file_and_index(clean: Path, bad: dict, message: str):
    images = json.loads((clean / "annotations" / "instances_train.json").read_text())["images"]
    write_coco(clean, images, [ann(9, 1, [1, 1, 2, 2]), bad])
    with pytest.raises(DataError, match=r"instances_train\.json: " + message):
        read(clean)


def test_skip_bad_skips_and_counts_every_bad_annotation_and_image(clean: Path):
    (clean / "images" / "train" / "b.jpg").write_bytes(b"definitely not a jpeg")
    (clean / "images" / "train" / "c.png").unlink()
    images = json.loads((clean / "annotations" / "instances_train.json").read_text())["images"]
    images.append({"id": 4, "file_name": "c.png", "width": 50, "height": 50})  # duplicate of a missing one
    images.append({"id": 5, "file_name": "a.png", "width": 10, "height": 10})  # header says 100x80
    images.append({"id": 6, "file_name": "a.png", "width": 0, "height": 10})  # bad entry
    write_coco(
        clean, images, [ann(9, 1, [1, 1, 2, 2])] + [b for b, _ in BAD_ANNOTATIONS] + [ann(8, 6, [1, 1, 2, 2])]
    )
    data, report = read(clean, skip_bad=True)
    assert [r.image.name for r in data.records] == ["a.png"]
    np.testing.assert_array_equal(data.records[0].boxes, [[1, 1, 3, 3]])
    assert report.skipped_lines == len(BAD_ANNOTATIONS) + 1  # + the image entry of size 0x10
    assert report.skipped_images == 4  # b.jpg garbage, c.png missing (twice), a.png with the wrong size
    text = "\n".join(report.problems)
    assert "not a readable image" in text and "image file not found" in text
    assert "image is 100x80 but instances_train.json says 10x10" in text
    assert "width and height must be positive numbers, got 0 x 10" in text


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.unlink(), r"b\.jpg: image file not found \(listed in instances_train\.json, id 2\)"),
        (lambda p: p.write_bytes(b"\x00garbage"), r"b\.jpg: not a readable image"),
        (lambda p: write_image(p, 61, 40), r"b\.jpg: image is 61x40 but instances_train\.json says 60x40"),
    ],
)
def test_bad_image_is_an_error_naming_the_file(clean: Path, damage, message: str):
    damage(clean / "images" / "train" / "b.jpg")
    with pytest.raises(DataError, match=message):
        read(clean)
    data, _ = read(clean, check_images=False)  # annotation-only reading does not look at images
    assert len(data) == 3


def test_not_json_is_an_error_with_the_line(tmp_path: Path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train.json").write_text('{"images": [],\n oops}')
    with pytest.raises(DataError, match=r"instances_train\.json:2: not valid JSON"):
        read(tmp_path)


@pytest.mark.parametrize(
    ("relative", "split"),
    [
        ("annotations/instances_train.json", "train"),
        ("annotations/instances_train2017_first128.json", "train2017"),
        ("annotations/mine.json", "mine"),
        ("mine.json", "mine"),
        ("labels/custom.json", "labels/custom.json"),
        ("annotations/my_train_set.json", "train"),
    ],
)
def test_split_resolution(tmp_path: Path, relative: str, split: str):
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    assert coco.resolve_json(tmp_path, split) == path


def test_unknown_split_lists_the_annotation_files(tmp_path: Path):
    write_coco(tmp_path, [], [], "instances_val.json")
    write_coco(tmp_path, [], [], "instances_val_extra.json")
    with pytest.raises(DataError, match=re.escape("available: annotations/instances_val.json, annotations/")):
        coco.resolve_json(tmp_path, "train")


def test_image_folder_rules(tmp_path: Path):
    images = [{"id": 1, "file_name": "x.png", "width": 8, "height": 8}]
    path = write_coco(tmp_path, images, [], "instances_train2017_first128.json")
    assert (
        read(tmp_path, "train", check_images=False)[0].records[0].image == path.parent / "x.png"
    )  # none has it
    write_image(tmp_path / "images" / "x.png", 8, 8)
    assert read(tmp_path, "train")[0].records[0].image == tmp_path / "images" / "x.png"
    write_image(tmp_path / "images" / "train2017" / "x.png", 8, 8)  # derived from the JSON stem
    assert read(tmp_path, "train")[0].records[0].image == tmp_path / "images" / "train2017" / "x.png"
    assert coco.read(path, "ignored", BadDataPolicy(), True).records[0].image.parent.name == "train2017"


def test_looks_like(tmp_path: Path, clean: Path):
    assert coco.looks_like(clean) and coco.looks_like(clean / "annotations" / "instances_train.json")
    (tmp_path / "other.json").write_text('{"a": 1}')
    assert not coco.looks_like(tmp_path / "other.json")
    assert not coco.looks_like(clean / "images")


def test_coco128_real(shared_data: Path):
    data, report = read(shared_data / "coco128", "train2017")
    summary = data.summary()
    assert (summary["images"], summary["boxes"], summary["crowd"], summary["classes"]) == (128, 939, 10, 80)
    assert summary["images_without_boxes"] == 2 and report.as_dict() == BadDataPolicy().report.as_dict()
    assert data.records[0].image == shared_data / "coco128" / "images" / "train2017" / "000000000009.jpg"
    via_sources = open_dataset(shared_data / "coco128", format="coco", split="train")
    assert len(via_sources) == 128 and via_sources.num_classes == 80


def test_voc07_train_json_real(shared_data: Path):
    data = open_dataset(shared_data / "voc" / "pascal_train2007.json", check_images=False)  # auto: coco
    assert data.format == "coco" and data.num_classes == 20 and data.class_names[0] == "aeroplane"
    assert len(data) == 2501 and sum(len(r.boxes) for r in data.records) == 7844
    assert data.report.as_dict() == BadDataPolicy().report.as_dict()


def test_given_classes_order_the_categories_by_name_and_a_missing_one_is_a_bad_line(clean: Path):
    policy = BadDataPolicy()
    data = coco.read(clean, "train", policy, True, classes=["dog", "cat", "bird"])
    assert data.class_names == ["dog", "cat", "bird"]
    assert data.records[0].classes.tolist() == [1, 0]  # cat (id 3) and the crowd dog (id 7)
    with pytest.raises(
        DataError, match=r"annotation 0 \(id 100\): category 'cat' is not in data\.classes \(dog\)"
    ):
        coco.read(clean, "train", BadDataPolicy(), True, classes=["dog"])
