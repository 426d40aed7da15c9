"""Pascal VOC reader: the standard VOCdevkit layout of XML annotations and split lists.

Layout (one "year folder", e.g. VOCdevkit/VOC2007):

    Annotations/<id>.xml           one file per image: <size>, and one <object> per box
    ImageSets/Main/<split>.txt     one image id per line (train, val, trainval, test)
    JPEGImages/<id>.jpg            the images (optional with check_images off)

`root` is a year folder with split `trainval`, or a VOCdevkit folder holding VOC2007/, VOC2012/...
with split `VOC2007/trainval` (or `2007/trainval`); sources.open_dataset joins `a+b` splits.

Rules:
- classes are the 20 standard VOC classes in the standard order (ids 0..19); an <object> whose
  stripped <name> is not one of them is a bad line (case matters: "Dog" is not "dog").
- VOC corners are 1-based inclusive pixels; a box becomes 0-based continuous xyxy as
  (xmin - 1, ymin - 1, xmax, ymax), so a box over the whole W x H image is (0, 0, W, H).
- the image size is <size><width>/<height>; when missing or zero it comes from the image header.
- <difficult>1</difficult> marks the box difficult (kept, flagged; ignored in training and eval).
- an id without its XML, unparsable XML, an object without a numeric <bndbox> or a non-0/1
  <difficult> are bad lines (the object, or the image for a missing/broken XML, is skipped); a
  missing or unreadable image, or one whose header size differs from the XML, is a bad image.
- every file is read through the dataset's DataRoot (trainer.data.root): a split or image id that
  resolves outside the dataset folder (absolute, `..`, a symlink out) is an error or a bad line.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from trainer.data.records import BadDataPolicy, DataError, DetectionSet, ImageRecord
from trainer.data.root import DataRoot

CLASS_NAMES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]  # fmt: skip
CLASS_IDS = {name: i for i, name in enumerate(CLASS_NAMES)}
CORNERS = ("xmin", "ymin", "xmax", "ymax")


def is_year_dir(path: Path, files: DataRoot) -> bool:
    """A folder with the VOC year layout (Annotations/ and ImageSets/Main/)."""
    return files.is_dir(path / "Annotations") and files.is_dir(path / "ImageSets" / "Main")


def year_dirs(root: Path, files: DataRoot) -> list[Path]:
    """The VOC*/ year folders inside a VOCdevkit folder, sorted by name."""
    return [p for p in files.glob(root, "VOC*") if is_year_dir(p, files)]


def looks_like(root: Path, files: DataRoot | None = None) -> bool:
    """A VOC year folder, or a VOCdevkit folder holding VOC*/ year folders."""
    files = files or DataRoot.of_source(root)
    return root.is_dir() and (is_year_dir(root, files) or bool(year_dirs(root, files)))


def split_names(year_dir: Path, files: DataRoot) -> list[str]:
    """The split lists of a year folder (the per-class lists like `dog_train.txt` left out)."""
    names = [p.stem for p in files.glob(year_dir / "ImageSets" / "Main", "*.txt")]
    return sorted(n for n in names if not any(n.startswith(c + "_") for c in CLASS_NAMES))


def resolve_split(root: Path, split: str, files: DataRoot) -> tuple[Path, str]:
    """(year folder, split name) for `split` under `root`; an error listing the splits there is."""
    if is_year_dir(root, files):
        year, name = root, split
        head, _, tail = split.partition("/")  # "VOC2007/trainval" given for the year folder itself
        if tail and head in (root.name, root.name.removeprefix("VOC")):
            name = tail
        available = split_names(root, files)
    else:
        head, _, name = split.partition("/")
        year = root / head if files.is_dir(root / head) else root / f"VOC{head}"
        available = [f"{y.name}/{s}" for y in year_dirs(root, files) for s in split_names(y, files)]
    split_file = year / "ImageSets" / "Main" / f"{name}.txt"
    if name and is_year_dir(year, files) and files.is_file(split_file):
        return year, name
    listed = ", ".join(available) or "none"
    raise DataError(
        f"{root}: VOC split {split!r} not found (no ImageSets/Main/<split>.txt); splits: {listed}"
    )


def read(
    root: Path, split: str, policy: BadDataPolicy, check_images: bool, files: DataRoot | None = None
) -> DetectionSet:
    """The images listed in `<year>/ImageSets/Main/<split>.txt`, in that order, as records, every
    file read through `files` (default: the DataRoot of `root`)."""
    files = files or DataRoot.of_source(root)
    year, name = resolve_split(Path(root), split, files)
    split_file = year / "ImageSets" / "Main" / f"{name}.txt"
    records = []
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
        record = read_image(year, image_id, where, policy, check_images, files)
        if record is not None:
            records.append(record)
    name = f"{year.name}/{name} (voc)"
    return DetectionSet(name, "voc", records, list(CLASS_NAMES), policy.report, files)


def read_image(
    year: Path, image_id: str, where: str, policy: BadDataPolicy, check_images: bool, files: DataRoot
) -> ImageRecord | None:
    """One image's record from its XML, or None when the XML or the image is bad (and skipped)."""
    xml_path = year / "Annotations" / f"{image_id}.xml"
    image = year / "JPEGImages" / f"{image_id}.jpg"
    try:
        xml = files.read_bytes(xml_path)
    except FileNotFoundError:
        policy.bad_line(where, f"image id {image_id!r} has no annotation file {xml_path}")
        return None
    except DataError as exc:  # outside the dataset folder, or not a file
        policy.bad_line(where, f"image id {image_id!r}: {exc}")
        return None
    try:
        tree = ET.fromstring(xml)
    except ET.ParseError as exc:
        line, _ = exc.position
        policy.bad_line(f"{xml_path}:{line}", f"not valid XML ({exc})")
        return None

    size = xml_size(tree, xml_path, policy)
    if size is None or check_images:
        try:
            header = files.image_size(image)
        except FileNotFoundError:
            policy.bad_image(str(image), f"image file not found (listed at {where})")
            return None
        except ValueError as exc:
            policy.bad_image(str(image), str(getattr(exc, "reason", exc)))  # OutsideRoot: no path twice
            return None
        if size is not None and size != header:
            policy.bad_image(
                str(image),
                f"image is {header[0]}x{header[1]} pixels but {xml_path} says {size[0]}x{size[1]}",
            )
            return None
        size = header
    width, height = size

    boxes, classes, difficult = [], [], []
    for index, obj in enumerate(tree.findall("object"), 1):
        parsed = parse_object(obj, f"{xml_path}: object {index}", policy)
        if parsed is not None:
            boxes.append(parsed[0])
            classes.append(parsed[1])
            difficult.append(parsed[2])
    kept, keep = policy.clean_boxes(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), width, height)
    return ImageRecord.build(
        image,
        width,
        height,
        kept,
        np.asarray(classes, dtype=np.int64)[keep],
        difficult=np.asarray(difficult, dtype=bool)[keep],
    )


def xml_size(tree: ET.Element, xml_path: Path, policy: BadDataPolicy) -> tuple[int, int] | None:
    """(width, height) from <size>, or None when missing, zero, or malformed (and skipped)."""
    values = []
    for tag in ("width", "height"):
        text = tree.findtext(f"size/{tag}")
        if text is None or not text.strip():
            return None
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not (math.isfinite(value) and value >= 0 and value.is_integer()):
            problem = f"<{tag}> {text.strip()!r} is not a whole number of pixels"
            policy.bad_line(f"{xml_path}: <size>", problem)
            return None
        values.append(int(value))
    width, height = values
    return None if width == 0 or height == 0 else (width, height)


def parse_object(obj: ET.Element, where: str, policy: BadDataPolicy) -> tuple[list[float], int, bool] | None:
    """(0-based xyxy box, class id, difficult) of one <object>, or None when it is malformed."""
    name = (obj.findtext("name") or "").strip()
    if name not in CLASS_IDS:
        problem = f"unknown class {name!r}" if name else "no <name>"
        policy.bad_line(where, f"{problem}; VOC classes are {', '.join(CLASS_NAMES)}")
        return None
    where = f"{where} ({name})"
    bndbox = obj.find("bndbox")
    if bndbox is None:
        policy.bad_line(where, "no <bndbox>")
        return None
    corners = []
    for tag in CORNERS:
        text = bndbox.findtext(tag)
        if text is None or not text.strip():
            policy.bad_line(where, f"<bndbox> has no <{tag}>")
            return None
        try:
            corners.append(float(text))
        except ValueError:
            policy.bad_line(where, f"<bndbox> <{tag}> {text.strip()!r} is not a number")
            return None
    flag = (obj.findtext("difficult") or "0").strip() or "0"
    if flag not in ("0", "1"):
        policy.bad_line(where, f"<difficult> is {flag!r}, expected 0 or 1")
        return None
    xmin, ymin, xmax, ymax = corners
    return [xmin - 1.0, ymin - 1.0, xmax, ymax], CLASS_IDS[name], flag == "1"
