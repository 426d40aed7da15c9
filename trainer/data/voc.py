"""Pascal VOC reader: XML annotations in the VOCdevkit layout, or in a flat folder as labelling
tools (labelImg, CVAT) write them. One XML file is read by trainer.data.voc_xml.

Layouts:

    VOC2007/                        a "year folder" (split `trainval`), or a VOCdevkit folder holding
      Annotations/<id>.xml          VOC2007/, VOC2012/... (split `VOC2007/trainval` or `2007/trainval`;
      ImageSets/Main/<split>.txt    just `trainval` when it holds one, as bccd/ holds BCCD/);
                                    sources.open_dataset joins `a+b` splits
      JPEGImages/<id>.jpg

    mydata/                         a flat folder: no ImageSets/Main
      annotations/<id>.xml          (or Annotations/)
      images/<file>                 (or JPEGImages/, or beside the XML): the XML's <filename>, else
                                    <id> with an image suffix
      train.txt, val.txt ...        optional split lists, one id a line

A flat folder's split `S` is `S.txt` in the folder; a folder without any train/val/trainval/test
list is one whole set, whatever the split is named (like a single annotation file: give
`data.val_fraction` to hold out part of it).

Classes: `classes` (data.classes) when given, in its order; otherwise found in the annotations: the
20 standard VOC classes in the standard order (ids 0..19) when every <name> in the folder's XML files
is one of them, else every name found there, sorted, so train and val of a set agree. A name missing
from a given list is a bad line naming the XML file and the object.

Every file is read through the dataset's DataRoot (trainer.data.root): a split or image id that
resolves outside the dataset folder (absolute, `..`, a symlink out) is an error or a bad line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trainer.data.records import BadDataPolicy, DataError, DetectionSet
from trainer.data.root import DataRoot
from trainer.data.voc_xml import CORNERS, IMAGE_SUFFIXES, image_record, object_names, parse_xml

__all__ = ["CLASS_NAMES", "CORNERS", "looks_like", "read", "resolve_split", "split_names"]

CLASS_NAMES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]  # fmt: skip
STANDARD_SPLITS = ("train", "val", "trainval", "test")


@dataclass(frozen=True)
class Layout:
    """Where one set's XML files, images and split lists are."""

    annotations: Path
    images: Path | None  # None: the image is beside its XML, or named by <filename>
    lists: Path | None  # the folder of <split>.txt files; None: a flat folder without lists
    flat: bool

    def image_for(self, image_id: str, filename: str | None, files: DataRoot) -> Path:
        folder = self.images or self.annotations
        if not self.flat:
            return folder / f"{image_id}.jpg"
        name = (filename or "").strip()
        if name and "/" not in name and "\\" not in name and files.is_file(folder / name):
            return folder / name
        for suffix in IMAGE_SUFFIXES:
            if files.is_file(folder / f"{image_id}{suffix}"):
                return folder / f"{image_id}{suffix}"
        return folder / (name if name and "/" not in name else f"{image_id}.jpg")


def is_year_dir(path: Path, files: DataRoot) -> bool:
    """A folder with the VOC year layout (Annotations/ and ImageSets/Main/)."""
    return files.is_dir(path / "Annotations") and files.is_dir(path / "ImageSets" / "Main")


def flat_annotations(path: Path, files: DataRoot) -> Path | None:
    """A flat folder's annotations/ (or Annotations/) holding XML files, when `path` is one."""
    if not path.is_dir() or files.is_dir(path / "ImageSets" / "Main"):
        return None
    for name in ("annotations", "Annotations"):
        if files.is_dir(path / name) and files.glob(path / name, "*.xml"):
            return path / name
    return None


def year_dirs(root: Path, files: DataRoot) -> list[Path]:
    """The year-layout folders inside a VOCdevkit-like folder (VOC2007/, or BCCD/), sorted by name."""
    return [p for p in files.glob(root, "*") if is_year_dir(p, files)]


def looks_like(root: Path, files: DataRoot | None = None) -> bool:
    """A VOC year folder, a VOCdevkit folder holding VOC*/ year folders, or a flat XML folder."""
    files = files or DataRoot.of_source(root)
    if not root.is_dir():
        return False
    return (
        is_year_dir(root, files) or bool(year_dirs(root, files)) or flat_annotations(root, files) is not None
    )


def split_names(year_dir: Path, files: DataRoot) -> list[str]:
    """The split lists of a year folder (the per-class lists like `dog_train.txt` left out)."""
    names = [p.stem for p in files.glob(year_dir / "ImageSets" / "Main", "*.txt")]
    return sorted(n for n in names if not any(n.startswith(c + "_") for c in CLASS_NAMES))


def resolve_split(root: Path, split: str, files: DataRoot) -> tuple[Layout, str | None]:
    """(layout, split name) for `split` under `root`; None as the name for a flat folder's whole set;
    an error listing the splits there are."""
    annotations = flat_annotations(root, files)
    if annotations is not None:
        images = next((root / n for n in ("images", "JPEGImages") if files.is_dir(root / n)), None)
        layout = Layout(annotations, images, root, flat=True)
        lists = [s for s in STANDARD_SPLITS if files.is_file(root / f"{s}.txt")]
        if files.is_file(root / f"{split}.txt"):
            return layout, split
        if not lists:
            return Layout(annotations, images, None, flat=True), None
        raise DataError(f"{root}: split list {split}.txt not found; split lists here: {', '.join(lists)}")
    if is_year_dir(root, files):
        year, name = root, split
        head, _, tail = split.partition("/")  # "VOC2007/trainval" given for the year folder itself
        if tail and head in (root.name, root.name.removeprefix("VOC")):
            name = tail
        available = split_names(root, files)
    else:
        head, _, name = split.partition("/")
        years = year_dirs(root, files)
        if not name and len(years) == 1:  # one set inside, e.g. bccd/BCCD: `train` is its train
            head, name = years[0].name, split
        year = root / head if files.is_dir(root / head) else root / f"VOC{head}"
        available = [f"{y.name}/{s}" for y in year_dirs(root, files) for s in split_names(y, files)]
    split_file = year / "ImageSets" / "Main" / f"{name}.txt"
    if name and is_year_dir(year, files) and files.is_file(split_file):
        return Layout(year / "Annotations", year / "JPEGImages", year / "ImageSets" / "Main", False), name
    listed = ", ".join(available) or "none"
    raise DataError(
        f"{root}: VOC split {split!r} not found (no ImageSets/Main/<split>.txt); splits: {listed}"
    )


def found_classes(annotations: Path, files: DataRoot) -> list[str]:
    """The classes the folder's XML files name: VOC's 20 when they are all VOC classes, else sorted."""
    names: set[str] = set()
    quiet = BadDataPolicy(skip_bad=True)  # a broken file is reported when its split reads it
    for xml_path in files.glob(annotations, "*.xml"):
        tree = parse_xml(xml_path, files, quiet, str(xml_path), xml_path.stem)
        if tree is not None:
            names |= object_names(tree)
    if names <= set(CLASS_NAMES):
        return list(CLASS_NAMES)
    return sorted(names)


def listed_ids(
    layout: Layout, name: str | None, policy: BadDataPolicy, files: DataRoot
) -> list[tuple[str, str]]:
    """(image id, where it is listed) of a split, in its order; a flat folder's whole set sorted.
    A generator, so that each problem is reported in line order with those of the XML files."""
    if name is None:
        yield from ((p.stem, str(p)) for p in files.glob(layout.annotations, "*.xml"))
        return
    split_file = layout.lists / f"{name}.txt"
    seen: dict[str, int] = {}
    for lineno, line in enumerate(files.read_text(split_file, "utf-8-sig").splitlines(), 1):
        where = f"{split_file}:{lineno}"
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 1:
            policy.bad_line(where, f"expected one image id per line, found {line.strip()!r}")
            continue
        image_id = fields[0]
        if image_id in seen:
            policy.bad_line(where, f"image id {image_id!r} listed twice (first at line {seen[image_id]})")
            continue
        seen[image_id] = lineno
        yield image_id, where


def read(
    root: Path,
    split: str,
    policy: BadDataPolicy,
    check_images: bool,
    files: DataRoot | None = None,
    classes: list[str] | None = None,
) -> DetectionSet:
    """The images of `split` (a list's order; a flat folder's whole set by id) as records, every
    file read through `files` (default: the DataRoot of `root`), classes as the module docstring says."""
    files = files or DataRoot.of_source(root)
    layout, name = resolve_split(Path(root), split, files)
    names = list(classes) if classes is not None else found_classes(layout.annotations, files)
    class_ids = {n: i for i, n in enumerate(names)}
    records = []
    for image_id, where in listed_ids(layout, name, policy, files):
        xml_path = layout.annotations / f"{image_id}.xml"
        tree = parse_xml(xml_path, files, policy, where, f"image id {image_id!r}")
        if tree is None:
            continue
        image = layout.image_for(image_id, tree.findtext("filename"), files)
        record = image_record(tree, xml_path, image, class_ids, where, policy, check_images, files)
        if record is not None:
            records.append(record)
    label = (
        f"{layout.lists.parent.parent.name}/{name}"
        if not layout.flat
        else f"{Path(root).name}/{name or 'all'}"
    )
    return DetectionSet(f"{label} (voc)", "voc", records, names, policy.report, files)
