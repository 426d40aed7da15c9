"""YOLO txt reader (the Ultralytics / YOLOv5 layout): a yaml of class names, images/ and labels/.

    data.yaml                  names: [person, car] or {0: person, 1: car}; path; train/val/test
    images/<split>/a.jpg       the images (jpg, jpeg, png, bmp, webp, tif, tiff, any case)
    labels/<split>/a.txt       one line per box: `class cx cy w h`, centre and size in 0..1

`root` is a folder holding the dataset yaml (config.yaml, data.yaml or dataset.yaml, else the one
*.yaml / *.yml with `names`) or the yaml file itself. `names` ids must be 0..C-1. The yaml's `path`
(relative to the yaml's folder; default: that folder) is the base of every split path.

`split` is a key of the yaml (train / val / test) whose value is an images folder, a list of
folders, or a .txt file listing image paths (relative ones resolved against the .txt's folder); or
a folder name under <base>/images/. Folders are searched recursively and images sorted by path.

A label file is the image path with its last `images` folder replaced by `labels` and the suffix by
.txt (the YOLOv5 rule; beside the image when the path has no `images` folder). An image without a
label file, or with an empty one, has zero boxes; a label file in the labels folder of a split's
images folder without its image is a bad image (the image went missing).

Rules:
- YOLO carries no image sizes, so every image header is read (check_images does not apply); a
  missing or unreadable image is a bad image.
- a line with other than 5 fields, a non-numeric field, a non-integer class or a class outside
  `names` is a bad line `labels/a.txt:<line>`; odd coordinates (negative, NaN, outside the image)
  go through the bad-data policy (clipped or dropped, and counted).
- there are no crowd or difficult flags.
- every file is read through the dataset's DataRoot (trainer.data.root): a `path:`, split entry or
  listed image that resolves outside the dataset folder (absolute, `..`, a symlink out) is an error,
  or a bad image for a listed image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainer.data.records import BadDataPolicy, DataError, DetectionSet, ImageRecord
from trainer.data.root import DataRoot, OutsideRoot
from trainer.safe_yaml import YamlInputError, parse_yaml

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
YAML_NAMES = ("config.yaml", "data.yaml", "dataset.yaml")
NON_SPLIT_KEYS = {"names", "nc", "path", "download"}


def load_yaml(path: Path, files: DataRoot) -> dict:
    try:
        data = parse_yaml(files.read_text(path), str(path))  # duplicate keys, alias bombs: refused
    except (OSError, UnicodeDecodeError, YamlInputError) as exc:
        raise DataError(f"{path}: cannot read the dataset yaml ({exc})") from None
    return data if isinstance(data, dict) else {}


def find_yaml(root: Path, files: DataRoot) -> Path:
    """The dataset yaml: `root` itself, a conventional name in it, or the one yaml with `names`."""
    if root.is_file():
        return root
    for name in YAML_NAMES:
        if files.is_file(root / name) and "names" in load_yaml(root / name, files):
            return root / name
    candidates = sorted([*files.glob(root, "*.yaml"), *files.glob(root, "*.yml")])
    found = [p for p in candidates if "names" in load_yaml(p, files)]
    if len(found) == 1:
        return found[0]
    what = "several (" + ", ".join(p.name for p in found) + ")" if found else "none"
    raise DataError(f"{root}: expected one dataset yaml with 'names' (e.g. data.yaml), found {what}")


def class_names(path: Path, data: dict) -> list[str]:
    """`names` as a list, from a list or an {id: name} dict with ids 0..C-1."""
    names = data.get("names")
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    if isinstance(names, dict) and names:
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise DataError(f"{path}: 'names' keys must be integer class ids, got {list(names)}") from None
        if ids != list(range(len(ids))):
            raise DataError(f"{path}: 'names' ids must be 0..{len(ids) - 1} without gaps, got {ids}")
        by_id = {int(k): str(v) for k, v in names.items()}
        return [by_id[i] for i in ids]
    raise DataError(f"{path}: 'names' must be a non-empty list or an {{id: name}} mapping, got {names!r}")


def looks_like(root: Path, files: DataRoot | None = None) -> bool:
    """A yaml file with `names`, or a folder with images/, labels/ and a dataset yaml."""
    files = files or DataRoot.of_source(root)
    if root.is_file():
        return root.suffix.lower() in (".yaml", ".yml") and "names" in load_yaml(root, files)
    if not (root.is_dir() and files.is_dir(root / "images") and files.is_dir(root / "labels")):
        return False
    try:
        find_yaml(root, files)
    except DataError:
        return False
    return True


def images_in(folder: Path, files: DataRoot) -> list[Path]:
    """The image files under `folder`, recursively, sorted (symlinked folders are not followed)."""
    return [p for p in files.glob(folder, "**/*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


def listed_images(txt: Path, files: DataRoot) -> list[Path]:
    """Image paths listed in a .txt file, one a line; relative ones are relative to its folder (each
    is checked against the dataset folder when it is opened)."""
    lines = [ln.strip() for ln in files.read_text(txt).splitlines()]
    return [txt.parent / ln if not Path(ln).is_absolute() else Path(ln) for ln in lines if ln]


def split_images(
    yaml_path: Path, data: dict, base: Path, split: str, files: DataRoot
) -> tuple[list[Path], list[Path]]:
    """(the image files of `split`, the folders read whole for them; rules in the module docstring)."""
    if split in data and split not in NON_SPLIT_KEYS:
        value = data[split]
        entries = value if isinstance(value, list) else [value]
        if not entries or not all(isinstance(e, str) and e for e in entries):
            raise DataError(
                f"{yaml_path}: split {split!r} must be an images folder, a list of folders or a .txt "
                f"list of images, got {value!r}"
            )
        out: list[Path] = []
        folders: list[Path] = []
        for entry in entries:
            p = Path(entry) if Path(entry).is_absolute() else base / entry
            files.check(p, where=f"{yaml_path}: split {split!r}")
            if files.is_dir(p):
                out += images_in(p, files)
                folders.append(p)
            elif files.is_file(p) and p.suffix.lower() == ".txt":
                out += listed_images(p, files)
            else:
                raise DataError(
                    f"{yaml_path}: split {split!r}: {p} is neither an images folder nor a .txt list"
                )
        return out, folders
    if files.is_dir(base / "images" / split):
        return images_in(base / "images" / split, files), [base / "images" / split]
    keys = [k for k in data if k not in NON_SPLIT_KEYS]
    folders = sorted(p.name for p in files.glob(base / "images", "*") if p.is_dir())
    raise DataError(
        f"{yaml_path}: split {split!r} is neither a key of the yaml ({', '.join(map(str, keys)) or 'none'}) "
        f"nor a folder under {base / 'images'} ({', '.join(folders) or 'none'})"
    )


def label_path(image: Path) -> Path:
    """The image path with its last `images` folder replaced by `labels`, suffix .txt."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def orphan_labels(images: list[Path], folders: list[Path], files: DataRoot) -> list[Path]:
    """Label files under the labels folder of an images folder read whole that no image there has:
    each is an image that went missing (a bad image, named), never silently fewer boxes. (A split
    listed in a .txt names its images: label files of others are not its business.)"""
    expected = {label_path(image) for image in images}
    found = []
    for folder in folders:
        labels = label_path(folder / "x").parent
        if labels != folder and files.is_dir(labels):
            found += [p for p in files.glob(labels, "**/*.txt") if p not in expected]
    return found


def parse_class(text: str) -> int | None:
    """An integer class id ("3", also "3.0" as some exporters write), or None."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def read_labels(
    label: Path, names: list[str], yaml_name: str, policy: BadDataPolicy, files: DataRoot
) -> tuple[list[list[float]], list[int]]:
    """(boxes [cx, cy, w, h] normalised, class ids) from one label file; bad lines go to the policy."""
    try:
        text = files.read_text(label)
    except OutsideRoot as exc:
        policy.bad_line(f"{label}:1", str(exc))
        return [], []
    except (OSError, UnicodeDecodeError) as exc:
        policy.bad_line(f"{label}:1", f"cannot read the label file as text ({exc.__class__.__name__})")
        return [], []
    boxes, classes = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label}:{number}"
        if len(fields) != 5:
            hint = " (segment polygons are not supported)" if len(fields) > 5 else ""
            policy.bad_line(where, f"expected 5 numbers 'class cx cy w h', got {len(fields)}{hint}")
            continue
        try:
            coords = [float(v) for v in fields[1:]]
        except ValueError:
            bad = next(v for v in fields[1:] if not _is_float(v))
            policy.bad_line(where, f"{bad!r} is not a number (expected 'class cx cy w h')")
            continue
        cls = parse_class(fields[0])
        if cls is None:
            policy.bad_line(where, f"class id {fields[0]!r} is not an integer")
            continue
        if not 0 <= cls < len(names):
            policy.bad_line(where, f"class id {cls} is not in the {len(names)} names of {yaml_name}")
            continue
        boxes.append(coords)
        classes.append(cls)
    return boxes, classes


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read(
    root: Path,
    split: str,
    policy: BadDataPolicy,
    check_images: bool,
    files: DataRoot | None = None,
    classes: list[str] | None = None,
) -> DetectionSet:
    """Reads one YOLO split into records, every file through `files` (default: the DataRoot of
    `root`). `check_images` is ignored: headers are always read. `classes` (data.classes) names the
    ids instead of the yaml's `names`, and must have as many."""
    files = files or DataRoot.of_source(root)
    yaml_path = find_yaml(root, files)
    data = load_yaml(yaml_path, files)
    names = class_names(yaml_path, data)
    names_from = yaml_path.name
    if classes is not None:
        if len(classes) != len(names):
            raise DataError(f"data.classes has {len(classes)} names but {yaml_path} has {len(names)}")
        names, names_from = list(classes), "data.classes"
    base_value = str(data.get("path") or ".")
    base = Path(base_value) if Path(base_value).is_absolute() else yaml_path.parent / base_value
    files.check(base, where=f"{yaml_path}: its 'path' {base_value!r}")
    if not files.is_dir(base):
        raise DataError(f"{yaml_path}: its 'path' {base_value!r} is not a folder ({base})")

    records = []
    images, folders = split_images(yaml_path, data, base, split, files)
    for label in orphan_labels(images, folders, files):
        policy.bad_image(
            str(label), f"label file without its image (no {label.stem}.* beside the split's images)"
        )
    for image in images:
        try:
            w, h = files.image_size(image)
        except FileNotFoundError:
            policy.bad_image(str(image), "image file not found")
            continue
        except ValueError as exc:
            policy.bad_image(str(image), str(getattr(exc, "reason", exc)))  # OutsideRoot: no path twice
            continue
        label = label_path(image)
        rows, classes = read_labels(label, names, names_from, policy, files) if label.is_file() else ([], [])
        cxcywh = np.array(rows, dtype=np.float64).reshape(-1, 4)
        xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)
        kept, keep = policy.clean_boxes(xyxy * np.array([w, h, w, h], dtype=np.float64), w, h)
        records.append(ImageRecord.build(image, w, h, kept, np.array(classes, dtype=np.int64)[keep]))
    name = f"{base.resolve().name}/{split} (yolo)"
    return DetectionSet(name, "yolo", records, names, policy.report, files)
