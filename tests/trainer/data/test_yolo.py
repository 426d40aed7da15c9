"""YOLO reader: yaml and split rules, label lines and the bad-data policy, and the real coco128 (also
against its COCO JSON: the same boxes in both formats)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.data import coco, yolo
from trainer.data.records import BadDataPolicy, DataError
from trainer.data.sources import detect_format, open_dataset

YAML = "path: .\ntrain: images/train\nval: [images/val, images/extra]\nnames:\n  0: cat\n  1: dog\n"


def write_image(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (10, 200, 90)).save(
        path, format="JPEG" if path.suffix != ".png" else None
    )


def write_label(root: Path, split: str, stem: str, text: str) -> Path:
    path = root / "labels" / split / f"{stem}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    """train: a.png 100x80 with two boxes, b.JPG 60x40 with an empty label, c.png 50x50 without one."""
    (tmp_path / "data.yaml").write_text(YAML)
    write_image(tmp_path / "images" / "train" / "a.png", 100, 80)
    write_image(tmp_path / "images" / "train" / "b.JPG", 60, 40)
    write_image(tmp_path / "images" / "train" / "c.png", 50, 50)
    (tmp_path / "images" / "train" / "notes.txt").write_text("not an image")
    write_label(tmp_path, "train", "a", "0 0.5 0.5 0.2 0.25\n\n1 0.1 0.1 0.2 0.2\n")
    write_label(tmp_path, "train", "b", "")
    return tmp_path


def read(root: Path, split="train", skip_bad=False):
    policy = BadDataPolicy(skip_bad)
    return yolo.read(root, split, policy, False), policy.report


def test_clean_set_exact_boxes(clean: Path):
    data, report = read(clean)
    assert data.format == "yolo" and data.class_names == ["cat", "dog"]
    assert [r.image.name for r in data.records] == ["a.png", "b.JPG", "c.png"]
    a, b, c = data.records
    assert (a.width, a.height, b.width, b.height, c.width, c.height) == (100, 80, 60, 40, 50, 50)
    np.testing.assert_allclose(a.boxes, [[40, 30, 60, 50], [0, 0, 20, 16]], atol=1e-4)
    assert a.classes.tolist() == [0, 1] and not (a.crowd.any() or a.difficult.any())
    assert b.boxes.shape == (0, 4) and c.boxes.shape == (0, 4)
    assert report.as_dict() == BadDataPolicy().report.as_dict()


def test_bad_boxes_are_clipped_or_dropped_and_counted(clean: Path):
    lines = [
        "0 0.5 0.5 0 0.1",
        "0 0.5 0.5 -0.1 0.1",
        "0 nan 0.5 0.1 0.1",
        "1 0.95 0.5 0.2 0.5",
        "0 2.0 0.5 0.1 0.1",
    ]
    write_label(clean, "train", "a", "\n".join(lines))
    data, report = read(clean)
    np.testing.assert_allclose(data.records[0].boxes, [[85, 20, 100, 60]], atol=1e-4)
    assert (report.dropped_empty, report.dropped_invalid, report.clipped, report.dropped_outside) == (
        2,
        1,
        1,
        1,
    )


BAD_LINES = [
    ("0 0.5 0.5 0.2", "expected 5 numbers 'class cx cy w h', got 4"),
    ("0 0.1 0.1 0.2 0.2 0.3 0.4", "expected 5 numbers 'class cx cy w h', got 7 (segment polygons"),
    ("0 0.5 abc 0.2 0.2", "'abc' is not a number"),
    ("1.5 0.5 0.5 0.2 0.2", "class id '1.5' is not an integer"),
    ("dog 0.5 0.5 0.2 0.2", "class id 'dog' is not an integer"),
    ("7 0.5 0.5 0.2 0.2", "class id 7 is not in the 2 names of data.yaml"),
    ("-1 0.5 0.5 0.2 0.2", "class id -1 is not in the 2 names of data.yaml"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_bad_line_names_file_and_line(clean: Path, line: str, message: str):
    label = write_label(clean, "train", "a", f"0 0.5 0.5 0.2 0.2\n{line}\n")
    with pytest.raises(DataError, match=re.escape(f"{label}:2: {message}")):
        read(clean)


def test_unreadable_and_missing_images(clean: Path):
    (clean / "images" / "train" / "b.JPG").write_bytes(b"garbage, not a jpeg")
    with pytest.raises(DataError, match=r"b\.JPG: not a readable image"):
        read(clean)
    (clean / "list.txt").write_text("./images/train/a.png\nimages/train/gone.jpg\n")
    (clean / "data.yaml").write_text(YAML.replace("train: images/train", "train: list.txt"))
    with pytest.raises(DataError, match=r"gone\.jpg: image file not found"):
        read(clean)


def test_skip_bad_skips_and_counts_everything(clean: Path):
    (clean / "images" / "train" / "b.JPG").write_bytes(b"garbage")
    write_label(clean, "train", "a", "0 0.5 0.5 0.2 0.25\n" + "\n".join(line for line, _ in BAD_LINES) + "\n")
    write_label(
        clean, "train", "c", "0 0.5 0.5 0 0.1\n0 nan 0.5 0.1 0.1\n1 0.95 0.5 0.2 0.5\n0 2 2 0.1 0.1\n"
    )
    data, report = read(clean, skip_bad=True)
    assert [r.image.name for r in data.records] == ["a.png", "c.png"]
    np.testing.assert_allclose(data.records[0].boxes, [[40, 30, 60, 50]], atol=1e-4)
    assert data.records[1].boxes.shape == (1, 4)  # the clipped one
    assert report.skipped_lines == len(BAD_LINES) and report.skipped_images == 1
    assert (report.dropped_empty, report.dropped_invalid, report.clipped, report.dropped_outside) == (
        1,
        1,
        1,
        1,
    )
    assert any(p.endswith("a.txt:2: expected 5 numbers 'class cx cy w h', got 4") for p in report.problems)


def test_split_rules(clean: Path):
    write_image(clean / "images" / "val" / "v.png", 20, 20)
    write_image(clean / "images" / "extra" / "sub" / "e.png", 20, 20)  # folders are searched recursively
    write_label(clean, "extra/sub", "e", "1 0.5 0.5 0.5 0.5\n")
    data, _ = read(clean, "val")  # a list of folders
    assert [r.image.name for r in data.records] == ["v.png", "e.png"]
    np.testing.assert_allclose(data.records[1].boxes, [[5, 5, 15, 15]], atol=1e-4)
    assert len(read(clean, "extra")[0]) == 1  # a folder under images/
    assert len(yolo.read(clean / "data.yaml", "train", BadDataPolicy(), True)) == 3  # the yaml as root
    with pytest.raises(
        DataError, match=r"split 'test' is neither a key of the yaml \(train, val\) nor a folder"
    ):
        read(clean, "test")


def test_label_path_rule():
    assert yolo.label_path(Path("/d/images/images/train/a.b.jpg")) == Path("/d/images/labels/train/a.b.txt")
    assert yolo.label_path(Path("/d/pics/a.png")) == Path("/d/pics/a.txt")


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ("names: [a, b]", None),
        ("names: {0: a, 2: b}", r"'names' ids must be 0\.\.1 without gaps, got \[0, 2\]"),
        ("names: {x: a}", r"'names' keys must be integer class ids"),
        ("names: []", r"'names' must be a non-empty list"),
    ],
)
def test_names_forms(clean: Path, names: str, message: str | None):
    (clean / "data.yaml").write_text(YAML.split("names:")[0] + names + "\n")
    if message is None:
        assert read(clean)[0].class_names == ["a", "b"]
    else:
        with pytest.raises(DataError, match=r"data\.yaml: " + message):
            read(clean)


def test_looks_like(clean: Path):
    assert yolo.looks_like(clean) and yolo.looks_like(clean / "data.yaml")
    assert not yolo.looks_like(clean / "images")
    (clean / "data.yaml").unlink()
    assert not yolo.looks_like(clean)
    with pytest.raises(DataError, match="expected one dataset yaml with 'names'"):
        read(clean)


def test_coco128_real(shared_data: Path):
    root = shared_data / "coco128"
    for split in ("train2017", "train"):
        data, report = read(root, split)
        assert (len(data), sum(len(r.boxes) for r in data.records), data.num_classes) == (128, 929, 80)
        assert report.as_dict() == BadDataPolicy().report.as_dict()
        empty = sorted(r.image.stem for r in data.records if len(r.boxes) == 0)
        assert empty == ["000000000250", "000000000508"]
    assert len(open_dataset(root, format="yolo", split="val")) == 128
    with pytest.raises(DataError, match="several formats"):
        detect_format(root)


def test_coco128_yolo_and_coco_give_the_same_boxes(shared_data: Path):
    """Every non-crowd COCO box has a YOLO box of the same class within 0.01 px, and vice versa."""
    root = shared_data / "coco128"
    from_yolo = yolo.read(root, "train2017", BadDataPolicy(), True)
    from_coco = coco.read(root, "train2017", BadDataPolicy(), True)
    assert from_yolo.class_names == from_coco.class_names
    assert [r.image for r in from_yolo.records] == [r.image for r in from_coco.records]
    for y, c in zip(from_yolo.records, from_coco.records, strict=True):
        assert (y.width, y.height) == (c.width, c.height)
        ours = sorted(zip(y.classes.tolist(), y.boxes.tolist(), strict=True))
        theirs = sorted(zip(c.classes[~c.crowd].tolist(), c.boxes[~c.crowd].tolist(), strict=True))
        assert len(ours) == len(theirs), y.image.name
        # Greedy nearest match within a class: sorting alone can swap two boxes whose first
        # coordinate differs by less than YOLO's rounding (000000000196 has such a pair).
        for cls, box in ours:
            dist = [np.abs(np.subtract(box, b)).max() if k == cls else np.inf for k, b in theirs]
            best = int(np.argmin(dist))
            assert dist[best] < 0.01, (y.image.name, cls, box)
            theirs.pop(best)


def test_given_classes_name_the_ids_and_must_count_as_many_as_the_yaml(clean: Path):
    data = yolo.read(clean, "train", BadDataPolicy(), False, classes=["kitten", "puppy"])
    assert data.class_names == ["kitten", "puppy"] and data.records[0].classes.tolist() == [0, 1]
    with pytest.raises(DataError, match=r"data\.classes has 3 names but .*data\.yaml has 2"):
        yolo.read(clean, "train", BadDataPolicy(), False, classes=["a", "b", "c"])


def test_a_label_file_without_its_image_is_a_bad_image_named_and_counted(clean: Path):
    """The image went missing: an error naming the label file, or with skip_bad a skipped image."""
    write_label(clean, "train", "orphan", "0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match=r"labels/train/orphan\.txt: label file without its image"):
        read(clean)
    data, report = read(clean, skip_bad=True)
    assert len(data) == 3 and report.skipped_images == 1
