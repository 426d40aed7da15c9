"""COCO reader: an "instances" JSON with `images`, `annotations` and `categories`.

`root` is either one .json file (the whole set; `split` is ignored) or a dataset folder. In a
folder, the annotation file for `split` is the first of these that exists:

    annotations/instances_<split>.json
    annotations/instances_<split>*.json    when exactly one matches (coco128: ..._train2017_first128)
    annotations/<split>.json
    <split>.json
    <split>                                a relative path to a .json file
    annotations/*<split>*.json             for the short names train / val / test, when exactly one matches

Images (`file_name` of each JSON image) are looked for in the first of these folders that holds the
first listed image: <base>/images/<name>, <base>/<split>, <base>/images, the JSON's own folder,
<JSON folder>/../images/<name>. <base> is the dataset folder (for a JSON given as a file: its folder,
or the folder above when that is `annotations/`); <name> is the split, or the JSON's stem without
`instances_` (and without what follows the next `_`: `instances_train2017_first128` -> `train2017`).
When no candidate has the image (annotation-only sets such as VOC's pascal_*.json), image paths
are placed in the JSON's folder, which only matters with check_images on.

Rules:
- `bbox` [x, y, w, h] in pixels becomes xyxy (x, y, x + w, y + h), then the bad-data policy.
- category ids become contiguous ids 0..C-1 in ascending id order; their names are kept.
- `iscrowd: 1` flags the box crowd and `ignore: 1` flags it difficult (kept, ignored in training).
- images without annotations are kept with zero boxes.
- an annotation with an unknown image_id or category_id, or a bbox that is not 4 numbers, is a bad
  line named `file: annotation <index> (id <id>)` (index 0-based in the `annotations` list); an
  image entry without a positive width/height is one too, and its image is skipped.
- width/height come from the JSON; with check_images every image header is read, and a missing or
  unreadable image, or one whose size differs from the JSON's, is a bad image.
- every file is read through the dataset's DataRoot (trainer.data.root): a `file_name` or split that
  resolves outside the dataset folder (absolute, `..`, a symlink out) is a bad image or an error.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

import numpy as np

from trainer.data.records import BadDataPolicy, DataError, DetectionSet, ImageRecord
from trainer.data.root import DataRoot

SHORT_SPLITS = ("train", "val", "test")


def load_json(path: Path, files: DataRoot) -> dict:
    """The parsed instances JSON; an error naming the file when it is not one."""
    try:
        data = json.loads(files.read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the annotation file ({exc})") from None
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DataError(f"{path}: not a COCO instances file (no top-level 'images' and 'annotations')")
    return data


def looks_like(root: Path, files: DataRoot | None = None) -> bool:
    """A .json file with top-level `images` and `annotations`, or a folder with annotations/*.json."""
    files = files or DataRoot.of_source(root)
    if root.is_file():
        if root.suffix.lower() != ".json":
            return False
        try:
            load_json(root, files)
        except DataError:
            return False
        return True
    return root.is_dir() and bool(files.glob(root / "annotations", "*.json"))


def resolve_json(root: Path, split: str, files: DataRoot | None = None) -> Path:
    """The annotation file for `split` in the dataset folder `root` (rules in the module docstring)."""
    files = files or DataRoot.of_source(root)
    ann = root / "annotations"
    if files.is_file(ann / f"instances_{split}.json"):
        return ann / f"instances_{split}.json"
    prefixed = files.glob(ann, f"instances_{split}*.json")
    if len(prefixed) == 1:
        return prefixed[0]
    for path in (ann / f"{split}.json", root / f"{split}.json", root / split):
        if files.is_file(path) and path.suffix.lower() == ".json":
            return path
    if split in SHORT_SPLITS:
        matches = files.glob(ann, f"*{split}*.json")
        if len(matches) == 1:
            return matches[0]
    found = [*files.glob(ann, "*.json"), *files.glob(root, "*.json")]
    available = sorted(str(p.relative_to(root)) for p in found)
    raise DataError(
        f"{root}: no COCO annotation file for split {split!r} (tried annotations/instances_{split}.json, "
        f"annotations/{split}.json, {split}.json); available: {', '.join(available) or 'none'}"
    )


def image_names(stem: str) -> list[str]:
    """Image folder names a JSON stem suggests: instances_train2017_first128 -> ..., train2017."""
    name = stem.removeprefix("instances_")
    return list(dict.fromkeys([name, name.split("_")[0]]))


def images_dir(
    json_path: Path, base: Path, split: str | None, first_file: str | None, files: DataRoot
) -> Path:
    """The folder `file_name` is relative to (rules in the module docstring)."""
    names = list(dict.fromkeys(([split] if split else []) + image_names(json_path.stem)))
    candidates = [base / "images" / n for n in names]
    candidates += [base / split] if split else []
    candidates += [base / "images", json_path.parent]
    candidates += [json_path.parent.parent / "images" / n for n in names]
    if first_file is not None:
        for folder in candidates:
            if files.is_dir(folder) and files.is_file(folder / first_file):
                return folder
    return json_path.parent


def is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def is_id(v) -> bool:
    """An id a JSON file can use as a key (ints; some exporters write strings)."""
    return isinstance(v, int | str) and not isinstance(v, bool)


def category_map(path: Path, data: dict) -> tuple[dict[int, int], list[str]]:
    """({COCO category id: contiguous id}, names), ids ascending; an error for a broken list."""
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise DataError(f"{path}: no 'categories' list, so class ids cannot be named")
    by_id: dict[int, str] = {}
    for i, c in enumerate(cats):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or "name" not in c:
            raise DataError(f"{path}: category {i} needs an integer 'id' and a 'name', got {c!r}")
        if c["id"] in by_id:
            raise DataError(f"{path}: category id {c['id']} appears twice")
        by_id[c["id"]] = str(c["name"])
    ids = sorted(by_id)
    return {cid: k for k, cid in enumerate(ids)}, [by_id[cid] for cid in ids]


def category_names(data: dict) -> dict:
    """{category id: name} of a file whose categories category_map has checked."""
    return {c["id"]: str(c["name"]) for c in data["categories"]}


def read(
    root: Path,
    split: str,
    policy: BadDataPolicy,
    check_images: bool,
    files: DataRoot | None = None,
    classes: list[str] | None = None,
) -> DetectionSet:
    """Reads one COCO split (or the whole JSON file `root`) into records, every file through `files`
    (default: the DataRoot of `root`). `classes` (data.classes) orders the categories by name; an
    annotation of a category it lacks is a bad line."""
    files = files or DataRoot.of_source(root)
    if root.is_file():
        path, split_name = root, None
        base = root.parent.parent if root.parent.name == "annotations" else root.parent
        name = f"{root.stem} (coco)"
    else:
        path, split_name, base = resolve_json(root, split, files), split, root
        name = f"{root.name}/{split} (coco)"
    data = load_json(path, files)
    cat_ids, class_names = category_map(path, data)
    cat_names = category_names(data)
    if classes is not None:
        order = {n: i for i, n in enumerate(classes)}
        cat_ids = {cid: order[cat_names[cid]] for cid in cat_ids if cat_names[cid] in order}
        class_names = list(classes)
    images, annotations = data["images"], data["annotations"]
    if not isinstance(images, list) or not isinstance(annotations, list):
        raise DataError(f"{path}: 'images' and 'annotations' must be lists")

    entries: dict = {}  # image id -> (file_name, width, height), in JSON order
    skipped_ids = set()  # images skipped for a bad entry: their annotations go with them
    for i, im in enumerate(images):
        im_id = im.get("id") if isinstance(im, dict) else None
        where = f"{path}: image {i} (id {im_id})"
        if not is_id(im_id) or im_id in entries or not isinstance(im.get("file_name"), str):
            what = "a duplicate id" if is_id(im_id) and im_id in entries else "no 'id' or 'file_name'"
            policy.bad_line(where, f"image entry has {what}; skipping it")
            continue
        w, h = im.get("width"), im.get("height")
        if not (is_number(w) and is_number(h) and w > 0 and h > 0):
            policy.bad_line(where, f"width and height must be positive numbers, got {w!r} x {h!r}")
            skipped_ids.add(im_id)
            continue
        entries[im_id] = (im["file_name"], int(w), int(h))

    boxes: dict = {k: [] for k in entries}  # image id -> [(xyxy, class, crowd, difficult)]
    for i, a in enumerate(annotations):
        if not isinstance(a, dict):
            policy.bad_line(f"{path}: annotation {i}", f"expected an object, got {a!r}")
            continue
        where = f"{path}: annotation {i} (id {a.get('id')})"
        im_id, cat, bbox = a.get("image_id"), a.get("category_id"), a.get("bbox")
        if is_id(im_id) and im_id in skipped_ids:
            continue
        if not is_id(im_id) or im_id not in entries:
            policy.bad_line(where, f"image_id {im_id!r} is not among the {len(entries)} images of the file")
            continue
        if classes is not None and is_id(cat) and cat in cat_names and cat not in cat_ids:
            policy.bad_line(
                where, f"category {cat_names[cat]!r} is not in data.classes ({', '.join(classes)})"
            )
            continue
        if not is_id(cat) or cat not in cat_ids:
            policy.bad_line(
                where, f"category_id {cat!r} is not among the {len(cat_ids)} categories of the file"
            )
            continue
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
            policy.bad_line(where, f"bbox must be 4 numbers [x, y, width, height], got {bbox!r}")
            continue
        x, y, w, h = (float(v) for v in bbox)
        crowd, ignore = bool(a.get("iscrowd", 0)), bool(a.get("ignore", 0))
        boxes[im_id].append(((x, y, x + w, y + h), cat_ids[cat], crowd, ignore))

    first = next(iter(entries.values()), None)
    folder = images_dir(path, base, split_name, first[0] if first else None, files)
    records = []
    for im_id, (file_name, w, h) in entries.items():
        image = folder / file_name
        if check_images:
            try:
                size = files.image_size(image)
            except FileNotFoundError:
                policy.bad_image(str(image), f"image file not found (listed in {path.name}, id {im_id})")
                continue
            except ValueError as exc:
                policy.bad_image(str(image), str(getattr(exc, "reason", exc)))  # OutsideRoot: no path twice
                continue
            if size != (w, h):
                policy.bad_image(
                    str(image), f"image is {size[0]}x{size[1]} but {path.name} says {w}x{h} (id {im_id})"
                )
                continue
        rows = boxes[im_id]
        xyxy = np.array([r[0] for r in rows], dtype=np.float64).reshape(-1, 4)
        kept, keep = policy.clean_boxes(xyxy, w, h)
        classes, crowd, difficult = (np.array([r[k] for r in rows]).reshape(-1)[keep] for k in (1, 2, 3))
        records.append(ImageRecord.build(image, w, h, kept, classes, crowd, difficult))
    return DetectionSet(name, "coco", records, class_names, policy.report, files)
