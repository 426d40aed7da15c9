"""Class names a dataset is read with: `data.classes`, given as a list or as a names file.

A names file holds one class name per line (blank lines and `#` comments ignored), the order giving
the class ids, like darknet's `.names` and labelImg's `classes.txt`. A relative path is relative to
the dataset's folder, and the file is read through the dataset's DataRoot (trainer.data.root), so it
lies inside what the job was admitted to like every other file it reads.

Every reader takes the resolved list (or None: the names the dataset itself carries): VOC maps each
<object>'s name to its position in the list, COCO each category's name, YOLO names its ids with it.
A name the data uses that the list lacks is an error naming the file and the object or line.
"""

from __future__ import annotations

from pathlib import Path

from trainer.data.records import DataError
from trainer.data.root import DataRoot


def check_names(names: list[str], where: str) -> list[str]:
    """`names` stripped; an error naming `where` for an empty list, an empty name or a duplicate."""
    out = [str(n).strip() for n in names]
    if not out:
        raise DataError(f"{where}: no class names")
    seen: dict[str, int] = {}
    for i, name in enumerate(out, 1):
        if not name:
            raise DataError(f"{where}: class {i} has an empty name")
        if name in seen:
            raise DataError(f"{where}: class {name!r} is listed twice (entries {seen[name]} and {i})")
        seen[name] = i
    return out


def read_names_file(path: Path, files: DataRoot) -> list[str]:
    """The class names in a names file, one a line, through the dataset's DataRoot."""
    try:
        text = files.read_text(path, "utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"data.classes: names file not found: {path}") from None
    names = []
    for lineno, line in enumerate(text.splitlines(), 1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if name in names:
            raise DataError(f"{path}:{lineno}: class {name!r} is listed twice")
        names.append(name)
    if not names:
        raise DataError(f"{path}: the names file lists no classes")
    return names


def resolve_classes(classes: list[str] | str | None, root: Path, files: DataRoot) -> list[str] | None:
    """`data.classes` as a list of names: a list as given, a names file read (relative to the
    dataset's folder: `root`, or its parent when the source is a single annotation file), None as is."""
    if classes is None:
        return None
    if isinstance(classes, list):
        return check_names(classes, "data.classes")
    path = Path(classes)
    if not path.is_absolute():
        path = (root if root.is_dir() else root.parent) / path
    return read_names_file(path, files)
