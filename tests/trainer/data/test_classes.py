"""data.classes: a list, or a names file read inside the dataset's folder, through every reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainer.data.test_voc import make_flat, obj_xml
from trainer.data.classes import resolve_classes
from trainer.data.records import DataError
from trainer.data.root import DataRoot
from trainer.data.sources import open_dataset


@pytest.fixture
def cells(tmp_path: Path) -> Path:
    (tmp_path / "cells" / "Annotations").mkdir(parents=True)
    return make_flat(tmp_path / "cells", {"a": [obj_xml("WBC", (1, 1, 9, 9)), obj_xml("RBC", (2, 2, 8, 8))]})


def test_a_list_is_taken_in_its_order_and_checked(cells: Path):
    files = DataRoot.of_source(cells)
    assert resolve_classes(["WBC", " RBC "], cells, files) == ["WBC", "RBC"]
    assert resolve_classes(None, cells, files) is None
    with pytest.raises(DataError, match=r"data\.classes: class 'a' is listed twice \(entries 1 and 2\)"):
        resolve_classes(["a", "a"], cells, files)
    with pytest.raises(DataError, match=r"data\.classes: class 2 has an empty name"):
        resolve_classes(["a", " "], cells, files)


def test_a_names_file_relative_to_the_dataset_one_name_a_line(cells: Path):
    (cells / "classes.txt").write_text("# ids in this order\nWBC\n\nRBC  # red cells\nPlatelets\n")
    data = open_dataset(cells, classes="classes.txt")
    assert data.class_names == ["WBC", "RBC", "Platelets"] and data.records[0].classes.tolist() == [0, 1]
    (cells / "twice.names").write_text("WBC\nRBC\nWBC\n")
    with pytest.raises(DataError, match=r"twice\.names:3: class 'WBC' is listed twice"):
        open_dataset(cells, classes="twice.names")
    with pytest.raises(DataError, match=r"data\.classes: names file not found: .*nothing\.txt"):
        open_dataset(cells, classes="nothing.txt")


def test_a_names_file_outside_the_dataset_is_refused(cells: Path, tmp_path: Path):
    (tmp_path / "elsewhere.txt").write_text("WBC\nRBC\n")
    for given in (str(tmp_path / "elsewhere.txt"), "../elsewhere.txt"):
        with pytest.raises(DataError, match="outside"):
            open_dataset(cells, classes=given)
    (cells / "link.txt").symlink_to(tmp_path / "elsewhere.txt")
    with pytest.raises(DataError, match="outside"):
        open_dataset(cells, classes="link.txt")


def test_a_class_the_list_lacks_names_the_file_and_object(cells: Path):
    with pytest.raises(DataError, match=r"a\.xml: object 2: unknown class 'RBC'; the classes are WBC"):
        open_dataset(cells, classes=["WBC"])
    data = open_dataset(cells, classes=["WBC"], skip_bad=True)
    assert data.records[0].classes.tolist() == [0] and data.report.skipped_lines == 1
