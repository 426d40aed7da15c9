"""Brainwash reader: the `.idl` head annotations of Stewart et al. (one class, "head").

Layout: one line per image, the image path relative to the .idl's folder in double quotes, then
zero or more boxes `(x1, y1, x2, y2)` in pixels of the original image, the line ending in `;` (the
file's last line ends in `.`):

    "brainwash_10_27_2014_images/00000000_640x480.png": (12.0, 3.0, 40.5, 39.0);
    "brainwash_10_27_2014_images/00001000_640x480.png";
    "brainwash_10_27_2014_images/00002000_640x480.png": ;

Rules:
- each line must match a strict pattern (quoted path, optional `:` and comma-separated boxes of
  exactly four numbers, then `;` or `.`); anything else is a bad line, and skipping that line skips
  the image. Blank lines are ignored. `nan`/`inf` numbers parse and are dropped as invalid boxes.
- corners are taken as given, never reordered: a box with x2 <= x1 or y2 <= y1 goes to the
  bad-data policy and is dropped and counted as zero/negative size.
- coordinates are used as they are, as 0-based continuous pixels (the format says no more).
- the .idl carries no image sizes, so every image header is read (`check_images` changes nothing);
  a missing or unreadable image is a bad image.

`root` is a .idl file (the split is ignored) or a folder holding `brainwash_<split>.idl` or
`<split>.idl`, or `split` is a path to a .idl relative to that folder. Every file is read through the
dataset's DataRoot (trainer.data.root): an image path that resolves outside the dataset folder
(absolute, `..`, a symlink out) is a bad image.
"""

from __future__ import annotations

import re
from pathlib import Path

from trainer.data.records import BadDataPolicy, DataError, DetectionSet, ImageRecord
from trainer.data.root import DataRoot

CLASS_NAMES = ["head"]

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?i:nan|inf|infinity)"
_BOX = rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\)"
_BOX_BARE = rf"\(\s*(?:{_NUM})\s*,\s*(?:{_NUM})\s*,\s*(?:{_NUM})\s*,\s*(?:{_NUM})\s*\)"
BOX_RE = re.compile(_BOX)
LINE_RE = re.compile(
    rf'^\s*"(?P<path>[^"]+)"\s*(?::\s*(?P<boxes>{_BOX_BARE}(?:\s*,\s*{_BOX_BARE})*)?\s*)?[;.]\s*$'
)


def looks_like(root: Path, files: DataRoot | None = None) -> bool:
    """A .idl file, or a folder with .idl files in it."""
    files = files or DataRoot.of_source(root)
    if root.is_file():
        return root.suffix == ".idl"
    return root.is_dir() and any(p.is_file() for p in files.glob(root, "*.idl"))


def resolve_split(root: Path, split: str, files: DataRoot) -> Path:
    """The .idl file for `split` under `root` (or `root` itself); an error listing the .idl files."""
    if root.is_file():
        return root
    for candidate in (root / f"brainwash_{split}.idl", root / f"{split}.idl", root / split):
        if files.is_file(candidate) and candidate.suffix == ".idl":
            return candidate
    listed = ", ".join(p.name for p in files.glob(root, "*.idl")) or "none"
    raise DataError(
        f"{root}: Brainwash split {split!r} not found (looked for brainwash_{split}.idl, {split}.idl); "
        f".idl files here: {listed}"
    )


def diagnose(line: str) -> str:
    """Why a line does not match the pattern, in words (the first problem found)."""
    text = line.strip()
    if text.count('"') != 2 or not text.startswith('"'):
        return "expected the image path in double quotes at the start of the line"
    if text.startswith('""'):
        return "empty image path"
    if text.count("(") != text.count(")"):
        return "unbalanced parentheses"
    if not text.endswith((";", ".")):
        return "the line does not end in ';' (or '.' on the last line)"
    rest = text[text.index('"', 1) + 1 : -1].strip()
    if rest and not rest.startswith(":"):
        return "expected ':' between the image path and the boxes"
    for group in re.findall(r"\(([^()]*)\)", rest):
        if not BOX_RE.fullmatch(f"({group})"):
            return f"box ({group}) is not four numbers x1, y1, x2, y2"
    return "expected boxes as (x1, y1, x2, y2) separated by commas"


def read(
    root: Path,
    split: str,
    policy: BadDataPolicy,
    check_images: bool,
    files: DataRoot | None = None,
    classes: list[str] | None = None,
) -> DetectionSet:
    """Every image line of the split's .idl, in file order, as records (class 0 = head), every file
    read through `files` (default: the DataRoot of `root`). `classes` (data.classes) may rename the
    one class."""
    if classes is not None and len(classes) != 1:
        raise DataError(f"data.classes: Brainwash has one class (heads), got {len(classes)} names")
    files = files or DataRoot.of_source(root)
    idl = resolve_split(Path(root), split, files)
    records = []
    for lineno, line in enumerate(files.read_text(idl, "utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{idl}:{lineno}"
        match = LINE_RE.match(line)
        if match is None:
            policy.bad_line(where, f"{diagnose(line)}: {shorten(line)}")
            continue
        image = idl.parent / match["path"]
        try:
            width, height = files.image_size(image)
        except FileNotFoundError:
            policy.bad_image(where, f"image {image} not found")
            continue
        except ValueError as exc:
            policy.bad_image(where, f"image {image}: {getattr(exc, 'reason', exc)}")
            continue
        boxes = [[float(v) for v in box] for box in BOX_RE.findall(match["boxes"] or "")]
        kept, _ = policy.clean_boxes(boxes, width, height)
        records.append(ImageRecord.build(image, width, height, kept, [0] * len(kept)))
    name = f"{idl.stem} (brainwash)"
    return DetectionSet(name, "brainwash", records, list(classes or CLASS_NAMES), policy.report, files)


def shorten(line: str, limit: int = 120) -> str:
    """The line quoted for a message, cut to `limit` characters."""
    text = line.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")
