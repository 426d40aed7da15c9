"""VOC reader: a VOCdevkit fixture written here, and a cross-check against the real VOC07 boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.data import sources, voc
from trainer.data.records import BadDataPolicy, DataError
from trainer.data.sources import open_dataset


def obj_xml(name: str, box, difficult: str | None = "0", bndbox: str | None = None) -> str:
    """One <object> as VOC writes it (1-based inclusive corners)."""
    flag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    if bndbox is None:
        bndbox = "".join(f"<{t}>{v}</{t}>" for t, v in zip(voc.CORNERS, box, strict=True))
    return (
        f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        f"\t\t{flag}\n\t\t<bndbox>{bndbox}</bndbox>\n\t</object>\n"
    )


def write_xml(year: Path, image_id: str, objects: list[str], size: tuple[int, int] | None) -> Path:
    size_xml = ""
    if size is not None:
        size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    text = (
        f"<annotation>\n\t<folder>{year.name}</folder>\n\t<filename>{image_id}.jpg</filename>\n"
        f"\t<source><database>The VOC Database</database></source>\n\t{size_xml}\n"
        f"\t<segmented>0</segmented>\n{''.join(objects)}</annotation>\n"
    )
    path = year / "Annotations" / f"{image_id}.xml"
    path.write_text(text)
    return path


def make_year(year: Path, images: dict[str, tuple[tuple[int, int], list[str]]], splits: dict[str, list[str]]):
    """A year folder: XML with <size>, a JPEG of that size, and ImageSets/Main split lists."""
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (year / sub).mkdir(parents=True, exist_ok=True)
    for image_id, (size, objects) in images.items():
        write_xml(year, image_id, objects, size)
        Image.new("RGB", size, (90, 120, 40)).save(year / "JPEGImages" / f"{image_id}.jpg")
    for name, ids in splits.items():
        (year / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    (year / "ImageSets" / "Main" / "aeroplane_trainval.txt").write_text("000005 -1\n")


@pytest.fixture
def devkit(tmp_path: Path) -> Path:
    """VOCdevkit/VOC2007 (3 images, one all-image box, one difficult, one empty) and VOC2012 (1)."""
    root = tmp_path / "VOCdevkit"
    images07 = {
        "000005": ((50, 40), [obj_xml("chair", (1, 1, 50, 40)), obj_xml("dog", (11, 6, 30, 25), "1")]),
        "000007": ((32, 48), [obj_xml("car", (5, 10, 20, 48), None), obj_xml(" person ", (2, 3, 4, 5))]),
        "000009": ((24, 24), []),
    }
    splits07 = {"train": ["000005", "000007"], "val": ["000009"], "trainval": ["000005", "000007", "000009"]}
    make_year(root / "VOC2007", images07, splits07)
    images12 = {"2008_000001": ((30, 20), [obj_xml("tvmonitor", (3, 4, 30, 20))])}
    make_year(root / "VOC2012", images12, {"trainval": ["2008_000001"]})
    return root


def read(
    root: Path, split: str = "trainval", skip_bad: bool = False, check_images: bool = True, classes=None
):
    return voc.read(root, split, BadDataPolicy(skip_bad), check_images, classes=classes)


def test_clean_devkit_gives_exact_zero_based_boxes_classes_and_flags(devkit: Path):
    data = read(devkit / "VOC2007")
    assert data.name == "VOC2007/trainval (voc)" and data.format == "voc"
    assert data.class_names == voc.CLASS_NAMES and len(data.class_names) == 20
    a, b, c = data.records
    assert (a.image, a.width, a.height) == (devkit / "VOC2007/JPEGImages/000005.jpg", 50, 40)
    np.testing.assert_array_equal(a.boxes, [[0, 0, 50, 40], [10, 5, 30, 25]])  # whole image = (0, 0, W, H)
    assert a.classes.tolist() == [8, 11] and a.difficult.tolist() == [False, True]
    assert a.boxes.dtype == np.float32 and a.classes.dtype == np.int64
    np.testing.assert_array_equal(b.boxes, [[4, 9, 20, 48], [1, 2, 4, 5]])
    assert b.classes.tolist() == [6, 14] and not b.difficult.any() and not b.crowd.any()
    assert (c.width, c.height, c.boxes.shape) == (24, 24, (0, 4))
    assert data.report.as_dict()["problems"] == [] and data.report.clipped == 0


def test_split_names_year_folder_devkit_and_missing(devkit: Path):
    assert len(read(devkit / "VOC2007", "train")) == 2
    assert len(read(devkit / "VOC2007", "VOC2007/val")) == 1
    for split in ("VOC2007/trainval", "2007/trainval"):
        assert read(devkit, split).name == "VOC2007/trainval (voc)"
    with pytest.raises(DataError, match=r"'test' not found.*splits: train, trainval, val$"):
        read(devkit / "VOC2007", "test")
    with pytest.raises(DataError, match=r": VOC2007/train, VOC2007/trainval, VOC2007/val, VOC2012/trainval$"):
        read(devkit, "trainval")
    assert voc.looks_like(devkit) and voc.looks_like(devkit / "VOC2012")
    assert not voc.looks_like(devkit / "VOC2007" / "Annotations") and not voc.looks_like(devkit / "nothing")


def test_size_from_header_when_missing_and_image_checks(devkit: Path):
    year = devkit / "VOC2007"
    write_xml(year, "000009", [obj_xml("cat", (1, 1, 24, 24))], None)
    assert read(year, "val", check_images=False).records[0].boxes.tolist() == [[0, 0, 24, 24]]
    write_xml(year, "000009", [], (0, 0))  # zero size: the header too
    assert (read(year, "val", check_images=False).records[0].width) == 24
    (year / "JPEGImages" / "000009.jpg").unlink()
    with pytest.raises(DataError, match=r"000009\.jpg: image file not found \(listed at .*val\.txt:1\)"):
        read(year, "val", check_images=False)
    write_xml(year, "000009", [], (24, 24))
    assert len(read(year, "val", check_images=False)) == 1  # annotation-only: no image needed


IMAGE_PROBLEMS = {
    "missing": (lambda p: p.unlink(), r"000007\.jpg: image file not found \(listed at .*train\.txt:2\)"),
    "unreadable": (lambda p: p.write_bytes(b"not a jpeg"), r"000007\.jpg: not a readable image"),
    "size": (
        lambda p: Image.new("RGB", (33, 48)).save(p, "JPEG"),
        r"000007\.jpg: image is 33x48 pixels but .*000007\.xml says 32x48",
    ),
}


@pytest.mark.parametrize("problem", IMAGE_PROBLEMS)
def test_bad_images_are_errors_or_skipped_and_counted(devkit: Path, problem: str):
    spoil, message = IMAGE_PROBLEMS[problem]
    spoil(devkit / "VOC2007" / "JPEGImages" / "000007.jpg")
    with pytest.raises(DataError, match=message):
        read(devkit / "VOC2007", "train")
    data = read(devkit / "VOC2007", "train", skip_bad=True)
    assert [r.image.stem for r in data.records] == ["000005"]
    assert data.report.skipped_images == 1 and data.report.skipped_lines == 0
    assert len(read(devkit / "VOC2007", "train", check_images=False)) == 2  # sizes from the XML


# (the bad <object>, what the message says after "000042.xml: object 2")
BAD_OBJECTS = {
    "unknown class": (obj_xml("Dog", (1, 1, 5, 5)), r": unknown class 'Dog'; the classes are aeroplane"),
    "no name": ("<object><bndbox/></object>", r": no <name>"),
    "no bndbox": ("<object><name>cat</name></object>", r" \(cat\): no <bndbox>"),
    "missing corner": (
        obj_xml("cat", None, bndbox="<xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"),
        r" \(cat\): <bndbox> has no <ymax>",
    ),
    "non-numeric": (obj_xml("cat", (1, "one", 5, 5)), r" \(cat\): <bndbox> <ymin> 'one' is not a number"),
    "difficult": (obj_xml("cat", (1, 1, 5, 5), "yes"), r" \(cat\): <difficult> is 'yes', expected 0 or 1"),
}


@pytest.mark.parametrize("problem", BAD_OBJECTS)
def test_bad_objects_name_the_xml_and_object_and_skip_only_that_object(devkit: Path, problem: str):
    year = devkit / "VOC2007"
    obj, message = BAD_OBJECTS[problem]
    write_xml(year, "000042", [obj_xml("cow", (1, 1, 10, 10)), obj, obj_xml("cat", (2, 2, 5, 5))], (50, 40))
    (year / "ImageSets" / "Main" / "bad.txt").write_text("000042\n")
    with pytest.raises(DataError, match=r"000042\.xml: object 2" + message):  # data.classes: VOC's
        read(year, "bad", check_images=False, classes=voc.CLASS_NAMES)
    data = read(year, "bad", skip_bad=True, check_images=False, classes=voc.CLASS_NAMES)
    assert data.records[0].classes.tolist() == [9, 7]  # the good objects before and after are kept
    assert data.report.skipped_lines == 1 and data.report.problems[0].startswith(str(year / "Annotations"))


BAD_SPLIT_LINES = {
    "missing xml": (
        ["000005", "000404"],
        r"bad\.txt:2: image id '000404' has no annotation file .*/000404\.xml",
    ),
    "broken xml": (["000005", "000011"], r"000011\.xml:3: not valid XML \(mismatched tag"),
    "listed twice": (
        ["000005", "000007", "000005"],
        r"bad\.txt:3: image id '000005' listed twice \(first at",
    ),
    "two fields": (["000005", "000007 1"], r"bad\.txt:2: expected one image id per line, found '000007 1'"),
}


@pytest.fixture
def broken(devkit: Path) -> Path:
    """VOC2007 with an XML that does not parse (000011) and one whose <width> is text (000012)."""
    year = devkit / "VOC2007"
    (year / "Annotations" / "000011.xml").write_text("<annotation>\n<size><width>5</width>\n</annotation>\n")
    write_xml(year, "000012", [obj_xml("cat", (1, 1, 8, 8))], ("wide", 40))
    Image.new("RGB", (16, 12)).save(year / "JPEGImages" / "000012.jpg")
    return year


@pytest.mark.parametrize("problem", BAD_SPLIT_LINES)
def test_bad_split_lines_and_xml_name_file_and_line(broken: Path, problem: str):
    lines, message = BAD_SPLIT_LINES[problem]
    (broken / "ImageSets" / "Main" / "bad.txt").write_text("\n".join(lines) + "\n\n")
    with pytest.raises(DataError, match=message):
        read(broken, "bad")
    data = read(broken, "bad", skip_bad=True)
    assert [r.image.stem for r in data.records] == lines[: len(lines) - 1]
    assert data.report.skipped_lines == 1 and len(data.report.problems) == 1


def test_malformed_size_is_reported_then_read_from_the_image(broken: Path):
    (broken / "ImageSets" / "Main" / "bad.txt").write_text("000012\n")
    with pytest.raises(DataError, match=r"000012\.xml: <size>: <width> 'wide' is not a whole number"):
        read(broken, "bad", check_images=False)
    record = read(broken, "bad", skip_bad=True, check_images=False).records[0]
    assert (record.width, record.height, record.boxes.tolist()) == (16, 12, [[0, 0, 8, 8]])


def test_every_bad_line_skipped_in_one_pass_is_counted_in_order(broken: Path):
    lines = ["000005", "000404", "000011", "000005", "000007 1", "000012", "000007"]
    (broken / "ImageSets" / "Main" / "bad.txt").write_text("\n".join(lines))
    data = read(broken, "bad", skip_bad=True)
    assert [r.image.stem for r in data.records] == ["000005", "000012", "000007"]
    assert data.report.skipped_lines == 5 and data.report.skipped_images == 0
    assert [p.split(": ")[0].rsplit("/", 1)[-1] for p in data.report.problems] == [
        "bad.txt:2", "000011.xml:3", "bad.txt:4", "bad.txt:5", "000012.xml",
    ]  # fmt: skip


def test_boxes_outside_empty_and_nan_are_clipped_or_dropped_and_counted(devkit: Path):
    year = devkit / "VOC2007"
    objects = [
        obj_xml("cat", (1, 1, 10, 10)),  # fine
        obj_xml("cat", (-4, 30, 60, 45)),  # partly outside -> clipped to (0, 29, 50, 40)
        obj_xml("cat", (70, 5, 90, 20)),  # entirely outside
        obj_xml("cat", (11, 6, 10, 20)),  # xmax = xmin - 1: zero width
        obj_xml("cat", (20, 20, 5, 30)),  # negative width
        obj_xml("cat", ("nan", 1, 5, 5)),  # NaN coordinate
        obj_xml("cat", (1, 1, 50.0004, 40)),  # rounding at the edge: clipped silently
    ]
    write_xml(year, "000042", objects, (50, 40))
    (year / "ImageSets" / "Main" / "odd.txt").write_text("000042\n")
    data = read(year, "odd", check_images=False)
    np.testing.assert_array_equal(data.records[0].boxes, [[0, 0, 10, 10], [0, 29, 50, 40], [0, 0, 50, 40]])
    report = data.report
    assert (report.clipped, report.dropped_outside, report.dropped_empty) == (1, 1, 2)
    assert report.dropped_invalid == 1


def test_open_dataset_detects_voc_and_concatenates_years(devkit: Path):
    assert sources.detect_format(devkit) == "voc" and sources.detect_format(devkit / "VOC2007") == "voc"
    data = open_dataset(devkit, split="VOC2007/trainval+VOC2012/trainval")
    assert data.name == "VOC2007/trainval (voc) + VOC2012/trainval (voc)" and len(data) == 4
    assert data.summary()["boxes"] == 5 and data.summary()["difficult"] == 1
    assert data.records[-1].boxes.tolist() == [[2, 3, 30, 20]] and data.records[-1].classes.tolist() == [19]
    explicit = open_dataset(str(devkit / "VOC2007"), format="voc", split="val", check_images=False)
    assert [r.image.stem for r in explicit.records] == ["000009"]


def test_real_voc2007_val_round_trips_through_xml(shared_data: Path, tmp_path: Path):
    """VOC07 val boxes from the COCO-style JSON, written back as the 1-based VOC XML they came from.

    Difficult = a JSON box absent from the keras-yolo3 non-difficult list of its image."""
    root = shared_data / "voc"
    coco = json.loads((root / "pascal_val2007.json").read_text())
    listed = (root / "nondifficult_0712_keras_yolo3" / "voc_classes.txt").read_text().split()
    assert listed == voc.CLASS_NAMES == [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]
    nondifficult = {}
    for line in (root / "nondifficult_0712_keras_yolo3" / "2007_trainval.txt").read_text().splitlines():
        path, *boxes = line.split()
        nondifficult[Path(path).stem] = {tuple(int(v) for v in b.split(",")) for b in boxes}

    images = [im for im in coco["images"] if Path(im["file_name"]).stem in nondifficult][:300]
    by_image: dict[int, list] = {im["id"]: [] for im in images}
    for ann in coco["annotations"]:
        by_image.get(ann["image_id"], []).append(ann)
    year = tmp_path / "VOC2007"
    make_year(year, {}, {"val": [Path(im["file_name"]).stem for im in images]})
    expected, expected_difficult, matched = [], [], 0
    for im in images:
        stem, anns = Path(im["file_name"]).stem, by_image[im["id"]]
        objects, flags = [], []
        for a in anns:
            x, y, w, h = a["bbox"]
            corners = (x + 1, y + 1, x + w, y + h)  # VOC's 1-based inclusive corners
            flags.append(corners + (a["category_id"] - 1,) not in nondifficult[stem])
            objects.append(obj_xml(voc.CLASS_NAMES[a["category_id"] - 1], corners, str(int(flags[-1]))))
        matched += len(flags) - sum(flags)
        assert len(flags) - sum(flags) == len(nondifficult[stem])  # every listed box is a JSON box
        write_xml(year, stem, objects, (im["width"], im["height"]))
        expected.append([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
        expected_difficult.append(flags)

    data = read(year, "val", check_images=False)
    assert len(data) == 300 and data.report.as_dict()["problems"] == []
    assert (data.report.clipped, data.report.dropped_empty, data.report.dropped_outside) == (0, 0, 0)
    for record, boxes, flags, im in zip(data.records, expected, expected_difficult, images, strict=True):
        assert (record.width, record.height) == (im["width"], im["height"])
        np.testing.assert_allclose(record.boxes, np.asarray(boxes, np.float32).reshape(-1, 4), atol=1e-4)
        assert record.difficult.tolist() == flags
    summary = data.summary()
    assert summary["boxes"] == sum(map(len, expected)) and summary["difficult"] == summary["boxes"] - matched
    assert 0 < summary["difficult"] < summary["boxes"]


# --- sets people label themselves: their own classes, flat folders --------------------------------


def test_classes_are_found_in_the_xml_files_sorted_and_the_same_for_every_split(devkit: Path):
    year = devkit / "VOC2007"
    write_xml(year, "000005", [obj_xml("WBC", (1, 1, 20, 20)), obj_xml("RBC", (2, 2, 9, 9))], (50, 40))
    write_xml(year, "000009", [obj_xml("Platelets", (1, 1, 5, 5))], (24, 24))
    train, val = read(year, "train"), read(year, "val")
    assert train.class_names == val.class_names == ["Platelets", "RBC", "WBC", "car", "person"]
    assert train.records[0].classes.tolist() == [2, 1] and val.records[0].classes.tolist() == [0]


def test_only_voc_names_keep_the_twenty_voc_classes_in_their_order(devkit: Path):
    data = read(devkit / "VOC2007", "val")  # 000009 has no objects; the folder's other XMLs are VOC
    assert data.class_names == voc.CLASS_NAMES


def test_given_classes_set_the_ids_and_a_missing_one_names_the_file_and_object(devkit: Path):
    year = devkit / "VOC2007"
    data = read(year, "train", classes=["person", "car", "dog", "chair"])
    assert data.class_names == ["person", "car", "dog", "chair"]
    assert [r.classes.tolist() for r in data.records] == [[3, 2], [1, 0]]
    with pytest.raises(
        DataError, match=r"000005\.xml: object 2: unknown class 'dog'; the classes are car, chair"
    ):
        read(year, "train", classes=["car", "chair", "person"])


def make_flat(root: Path, objects: dict[str, list[str]], lists: dict[str, list[str]] | None = None) -> Path:
    """A labelImg-style folder: annotations/<id>.xml, images/<id>.png named by <filename>."""
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    for image_id, objs in objects.items():
        write_xml(root, image_id, objs, (40, 30))
        (root / "annotations" / f"{image_id}.xml").write_text(
            (root / "Annotations" / f"{image_id}.xml")
            .read_text()
            .replace(f"{image_id}.jpg", f"{image_id}.png")
        )
        Image.new("RGB", (40, 30)).save(root / "images" / f"{image_id}.png")
    for path in (root / "Annotations").glob("*.xml"):
        path.unlink()
    (root / "Annotations").rmdir()
    for name, ids in (lists or {}).items():
        (root / f"{name}.txt").write_text("\n".join(ids) + "\n")
    return root


@pytest.fixture
def flat(tmp_path: Path) -> Path:
    (tmp_path / "cells" / "Annotations").mkdir(parents=True)
    objects = {
        f"img{i}": [obj_xml("cell", (1, 1, 10 + i, 10)), obj_xml("debris", (5, 5, 9, 9))] for i in range(5)
    }
    return make_flat(tmp_path / "cells", objects)


def test_a_flat_folder_without_lists_is_one_whole_set_read_by_auto(flat: Path):
    data = open_dataset(flat)  # format auto, split "train": no lists, so the whole folder
    assert sources.detect_format(flat) == "voc" and data.name == "cells/all (voc)"
    assert [r.image.name for r in data.records] == [f"img{i}.png" for i in range(5)]
    assert data.class_names == ["cell", "debris"] and data.records[2].boxes[0].tolist() == [0, 0, 12, 10]


def test_a_flat_folder_with_lists_reads_them_and_names_the_missing_one(flat: Path):
    (flat / "train.txt").write_text("img0\nimg3\n")
    assert [r.image.stem for r in open_dataset(flat, split="train").records] == ["img0", "img3"]
    with pytest.raises(DataError, match=r"split list val\.txt not found; split lists here: train"):
        open_dataset(flat, split="val")


def test_bccd_reads_with_format_auto_and_nothing_else(shared_data: Path):
    root = shared_data / "bccd"
    counts = {}
    for split in ("train", "val", "test"):
        data = open_dataset(root, split=split)
        assert data.format == "voc" and data.class_names == ["Platelets", "RBC", "WBC"]
        counts[split] = (len(data), data.summary()["boxes"])
    assert {k: v[0] for k, v in counts.items()} == {"train": 205, "val": 87, "test": 72}  # PROVENANCE.txt
    # Every box is kept: the two "zero-size" ones (xmin == xmax, ymin == ymax) are 1-pixel boxes in
    # VOC's inclusive corners.
    assert sum(v[1] for v in counts.values()) == 4888
