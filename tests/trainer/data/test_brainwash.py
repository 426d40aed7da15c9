"""Brainwash reader: .idl fixtures in the dataset's exact format, with small PNGs of a few sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.data import brainwash, sources
from trainer.data.records import BadDataPolicy, DataError
from trainer.data.sources import open_dataset

IMAGES = "brainwash_10_27_2014_images"
SIZES = {  # (width, height): small stand-ins for Brainwash's 640 x 480 frames
    "00000000_640x480.png": (64, 48),
    "00001000_640x480.png": (80, 60),
    "00002000_640x480.png": (40, 40),
    "00003000_640x480.png": (64, 48),
}
CLEAN = (
    f'"{IMAGES}/00000000_640x480.png": (25.0, 24.0, 29.5, 27.9), (1.0, 3.0, 40.5, 39.0);\n'
    f'"{IMAGES}/00001000_640x480.png";\n'
    f'"{IMAGES}/00002000_640x480.png": (0.0, 0.0, 40.0, 40.0);\n'
    f'"{IMAGES}/00003000_640x480.png": ;\n'
    f'"{IMAGES}/00000000_640x480.png": (10, 11, 12, 13), (1e1, 2.5E+1, 20., .5e2).\n'
)
EXPECTED = [
    ((64, 48), [[25, 24, 29.5, 27.9], [1, 3, 40.5, 39]]),
    ((80, 60), []),
    ((40, 40), [[0, 0, 40, 40]]),
    ((64, 48), []),
    ((64, 48), [[10, 11, 12, 13], [10, 25, 20, 48]]),  # y2 = 50 clipped to the 48 px image
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A Brainwash folder: the images (RGB PNGs) and brainwash_train.idl."""
    (tmp_path / IMAGES).mkdir()
    for name, size in SIZES.items():
        Image.new("RGB", size, (200, 180, 150)).save(tmp_path / IMAGES / name)
    (tmp_path / "brainwash_train.idl").write_text(CLEAN)
    return tmp_path


def read(root: Path, split: str = "train", skip_bad: bool = False):
    return brainwash.read(root, split, BadDataPolicy(skip_bad), check_images=False)


def test_clean_idl_gives_exact_boxes_in_file_order(folder: Path):
    data = read(folder)
    assert (data.name, data.format) == ("brainwash_train (brainwash)", "brainwash")
    assert data.class_names == ["head"]
    assert len(data) == len(EXPECTED)
    for record, ((w, h), boxes) in zip(data.records, EXPECTED, strict=True):
        assert (record.width, record.height) == (w, h)
        np.testing.assert_allclose(record.boxes, np.asarray(boxes, np.float32).reshape(-1, 4))
        assert record.boxes.dtype == np.float32 and record.classes.tolist() == [0] * len(boxes)
        assert not record.crowd.any() and not record.difficult.any()
    assert data.records[0].image == folder / IMAGES / "00000000_640x480.png"
    assert data.report.clipped == 1 and data.report.problems == []


def test_split_resolution_and_looks_like(folder: Path):
    (folder / "val.idl").write_text(CLEAN.splitlines()[1] + "\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "extra.idl").write_text(f'"../{IMAGES}/00002000_640x480.png".\n')
    assert len(read(folder / "brainwash_train.idl", "ignored")) == 5  # a file: the split is ignored
    assert len(read(folder, "val")) == 1
    assert read(folder, "sub/extra.idl").records[0].width == 40  # paths relative to the .idl's folder
    with pytest.raises(DataError, match=r"'test' not found .*files here: brainwash_train\.idl, val\.idl$"):
        read(folder, "test")
    assert brainwash.looks_like(folder) and brainwash.looks_like(folder / "val.idl")
    assert not brainwash.looks_like(folder / IMAGES) and not brainwash.looks_like(folder / IMAGES / "x.png")


P = f'"{IMAGES}/00001000_640x480.png"'  # the quoted path that starts a line
BAD_LINES = {
    "no quotes": (P[1:-1] + ": (1.0, 2.0, 3.0, 4.0);", "expected the image path in double quotes"),
    "unbalanced quote": (P[:-1] + ": (1.0, 2.0, 3.0, 4.0);", "in double quotes"),
    "unbalanced paren": (P + ": (1.0, 2.0, 3.0, 4.0;", "unbalanced parentheses"),
    "three numbers": (P + ": (1.0, 2.0, 3.0);", r"box \(1.0, 2.0, 3.0\) is not four"),
    "five numbers": (P + ": (1, 2, 3, 4, 5);", r"box \(1, 2, 3, 4, 5\) is not four"),
    "text in box": (P + ": (1, 2, x, 4);", r"box \(1, 2, x, 4\) is not four"),
    "no terminator": (P + ": (1.0, 2.0, 3.0, 4.0)", "does not end in ';'"),
    "no colon": (P + " (1.0, 2.0, 3.0, 4.0);", "expected ':' between"),
    "no comma": (P + ": (1, 2, 3, 4) (5, 6, 7, 8);", "separated by commas"),
    "score suffix": (P + ": (1, 2, 3, 4):0.9;", "separated by commas"),
    "empty path": ('"": (1, 2, 3, 4);', "empty image path"),
    "garbage": ("#!garbage", "expected the image path in double quotes"),
}


@pytest.mark.parametrize("problem", BAD_LINES)
def test_each_bad_line_names_file_and_line_and_skips_that_image(folder: Path, problem: str):
    bad, message = BAD_LINES[problem]
    lines = CLEAN.splitlines()
    lines.insert(2, bad)
    (folder / "bad.idl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"bad\.idl:3: .*{message}"):
        read(folder, "bad")
    data = read(folder, "bad", skip_bad=True)
    assert [r.width for r in data.records] == [w for (w, _), _ in EXPECTED]  # the bad image line is gone
    assert data.report.skipped_lines == 1 and data.report.problems[0].startswith(f"{folder / 'bad.idl'}:3: ")


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda p: p.unlink(), r"brainwash_train\.idl:2: image .*/00001000_640x480\.png not found"),
        (
            lambda p: p.write_text("not a png"),
            r"train\.idl:2: image .*/00001000_640x480\.png: not a readable",
        ),
    ],
    ids=["missing", "unreadable"],
)
def test_bad_images_name_the_line_and_are_skipped_and_counted(folder: Path, spoil, message: str):
    spoil(folder / IMAGES / "00001000_640x480.png")
    with pytest.raises(DataError, match=message):
        read(folder)
    data = read(folder, skip_bad=True)
    assert [r.image.name for r in data.records].count("00001000_640x480.png") == 0 and len(data) == 4
    assert data.report.skipped_images == 1 and data.report.skipped_lines == 0


def test_reversed_empty_outside_and_nan_boxes_are_dropped_or_clipped_and_counted(folder: Path):
    line = (
        f'"{IMAGES}/00000000_640x480.png": (1, 2, 11, 12), (30, 5, 20, 15), (5, 5, 5, 9), (-6, 40, 10, 60), '
        "(70, 1, 90, 9), (1, 1, 10, 48.0004), (nan, 1, 5, 5), (1, 1, inf, 5)."
    )
    (folder / "odd.idl").write_text(line + "\n")
    data = read(folder, "odd")
    np.testing.assert_allclose(data.records[0].boxes, [[1, 2, 11, 12], [0, 40, 10, 48], [1, 1, 10, 48]])
    report = data.report
    assert (report.clipped, report.dropped_empty, report.dropped_outside) == (1, 2, 1)
    assert report.dropped_invalid == 2
    assert report.skipped_lines == 0  # counted by the box policy, not malformed lines


def test_many_bad_lines_at_once_are_all_counted(folder: Path):
    lines = [CLEAN.splitlines()[0], *(bad for bad, _ in BAD_LINES.values()), "", CLEAN.splitlines()[2]]
    (folder / "bad.idl").write_text("\n".join(lines) + "\n")
    data = read(folder, "bad", skip_bad=True)
    assert len(data) == 2 and data.report.skipped_lines == len(BAD_LINES)
    assert [p.split(": ")[0].rsplit(":", 1)[1] for p in data.report.problems] == [
        str(i) for i in range(2, 2 + len(BAD_LINES))
    ]


def test_open_dataset_detects_brainwash_folder_and_file(folder: Path):
    assert sources.detect_format(folder) == "brainwash"
    data = open_dataset(folder, split="train")
    assert len(data) == 5 and data.summary()["boxes"] == 5 and data.summary()["images_without_boxes"] == 2
    single = open_dataset(str(folder / "brainwash_train.idl"), format="brainwash", split="a+b")
    assert [r.width for r in single.records] == [64, 80, 40, 64, 64]
    (folder / "brainwash_val.idl").write_text(CLEAN.splitlines()[2] + "\n")
    both = open_dataset(folder, format="brainwash", split="train+val")
    assert both.name == "brainwash_train (brainwash) + brainwash_val (brainwash)" and len(both) == 6
