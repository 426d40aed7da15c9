"""One Pascal VOC XML annotation file as an image record (the layouts are trainer.data.voc's).

Rules:
- an <object>'s stripped <name> must be one of the dataset's classes (case matters: "Dog" is not
  "dog"); one that is not is a bad line naming the XML file and the object.
- VOC corners are 1-based inclusive pixels; a box becomes 0-based continuous xyxy as
  (xmin - 1, ymin - 1, xmax, ymax), so a box over the whole W x H image is (0, 0, W, H).
- the image size is <size><width>/<height>; when missing or zero it comes from the image header.
- <difficult>1</difficult> marks the box difficult (kept, flagged; ignored in training and eval).
- unparsable XML, an object without a numeric <bndbox> or a non-0/1 <difficult> are bad lines (the
  object, or the image for a broken XML, is skipped); a missing or unreadable image, or one whose
  header size differs from the XML, is a bad image.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from trainer.data.records import BadDataPolicy, DataError, ImageRecord
from trainer.data.root import DataRoot

CORNERS = ("xmin", "ymin", "xmax", "ymax")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG")


def parse_xml(
    xml_path: Path, files: DataRoot, policy: BadDataPolicy, where: str, what: str
) -> ET.Element | None:
    """The parsed XML, or None when it is missing, outside the dataset folder, or not XML (each a bad
    line at `where`, the split list's line; `what` names the image: "image id '000005'")."""
    try:
        xml = files.read_bytes(xml_path)
    except FileNotFoundError:
        policy.bad_line(where, f"{what} has no annotation file {xml_path}")
        return None
    except DataError as exc:  # outside the dataset folder, or not a file
        policy.bad_line(where, f"{what}: {exc}")
        return None
    try:
        return ET.fromstring(xml)
    except ET.ParseError as exc:
        line, _ = exc.position
        policy.bad_line(f"{xml_path}:{line}", f"not valid XML ({exc})")
        return None


def object_names(tree: ET.Element) -> set[str]:
    """The stripped class names of an annotation's objects (empty names left out)."""
    return {n for obj in tree.findall("object") if (n := (obj.findtext("name") or "").strip())}


def image_record(
    tree: ET.Element,
    xml_path: Path,
    image: Path,
    class_ids: dict[str, int],
    where: str,
    policy: BadDataPolicy,
    check_images: bool,
    files: DataRoot,
) -> ImageRecord | None:
    """One image's record from its parsed XML, or None when the image is bad (and skipped)."""
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
        parsed = parse_object(obj, f"{xml_path}: object {index}", class_ids, policy)
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


def parse_object(
    obj: ET.Element, where: str, class_ids: dict[str, int], policy: BadDataPolicy
) -> tuple[list[float], int, bool] | None:
    """(0-based xyxy box, class id, difficult) of one <object>, or None when it is malformed."""
    name = (obj.findtext("name") or "").strip()
    if name not in class_ids:
        problem = f"unknown class {name!r}" if name else "no <name>"
        shown = ", ".join(list(class_ids)[:25]) + (", ..." if len(class_ids) > 25 else "")
        policy.bad_line(where, f"{problem}; the classes are {shown}")
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
    return [xmin - 1.0, ymin - 1.0, xmax, ymax], class_ids[name], flag == "1"
