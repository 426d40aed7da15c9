"""DataRoot: the folder a dataset is read from, and the only way its readers open files.

A job reads only inside what it was admitted to (DESIGN.md, "Security rules"): its source, every
split, and every path an annotation file names (a COCO `file_name`, a YOLO yaml's `path:` and image
lists, VOC ids, Brainwash image paths) must resolve, symlinks included, under the dataset's folder.

- The folder is the source itself when it is a folder; for an annotation file, the folder the file
  belongs to: its parent, or the parent of `annotations/` (COCO's layout), where readers look for
  the images.
- With `within` (the root the service admitted the source under: `data.allowed_root`), the source
  must still resolve inside it when the dataset is opened (a symlink swapped after admission is
  caught), and the folder is never wider than it.
- `excluded` folders are outside even when they lie under the folder: the S3 mirror cache, where
  other jobs' downloaded datasets live, is never part of a local dataset.
- The check is made when a file is opened, on the file actually opened: its device and inode must be
  those of a real path inside the folder, so a symlink changed between a check and an open is refused
  too. Probing a path (`is_file`, `is_dir`) answers "absent" outside the folder, and nothing is
  listed in a folder outside it: a dataset cannot be used to learn what exists elsewhere.

Refusals are `OutsideRoot`, a DataError naming the path, where it resolves, and the folder.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from trainer.data.errors import DataError


class OutsideRoot(DataError):
    """A path that resolves outside the dataset's folder (or into an excluded one): never opened.

    `reason` is the message without the path, for readers that name the path themselves."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(path))


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def dataset_folder(source: Path) -> Path:
    """The folder a dataset source belongs to: itself, or an annotation file's folder (the folder above
    `annotations/`, COCO's layout)."""
    if source.is_dir():
        return source
    parent = source.parent
    return parent.parent if parent.name == "annotations" else parent


@dataclass(frozen=True)
class DataRoot:
    folder: Path  # a real path (symlinks resolved)
    excluded: tuple[Path, ...] = ()  # real paths, outside even when under `folder`

    @classmethod
    def of_source(
        cls, source: str | Path, within: str | Path | None = None, excluded: Iterable[str | Path] = ()
    ) -> DataRoot:
        """The DataRoot of a local dataset source (a folder or an annotation file).

        OutsideRoot when the source resolves outside `within`, or into an excluded folder."""
        source = Path(source)
        real_source = _real(source)
        skip = tuple(_real(p) for p in excluded)
        folder = _real(dataset_folder(source))
        if within is not None:
            bound = _real(within)
            if not _under(real_source, bound):
                raise OutsideRoot(
                    f"data.source: {source} resolves to {real_source}, outside {bound}, the root this job "
                    "was admitted under (was a symlink changed after it was submitted?)"
                )
            if not _under(folder, bound):  # the annotation file's folder is wider than the admitted root
                folder = bound
        for other in skip:
            if _under(real_source, other) or _under(folder, other):
                raise OutsideRoot(
                    f"data.source: {source} resolves to {real_source}, inside {other}, the S3 mirror cache "
                    "(other jobs' downloaded datasets live there; it is never a dataset folder)"
                )
        return cls(folder, tuple(p for p in skip if _under(p, folder)))

    # --- where a path is ------------------------------------------------------------------------------

    def inside(self, path: str | Path) -> bool:
        """Whether `path`, symlinks resolved now, lies under the folder and outside every excluded one."""
        return self._inside_real(_real(path))

    def _inside_real(self, real: Path) -> bool:
        return _under(real, self.folder) and not any(_under(real, p) for p in self.excluded)

    def check(self, path: str | Path, where: str = "") -> Path:
        """`path` when it lies inside (see `inside`), else OutsideRoot naming it (after `where`, the
        file and field that named the path, when given)."""
        real = _real(path)
        if not self._inside_real(real):
            raise self._outside(path, real, where)
        return Path(path)

    def _outside(self, path: str | Path, real: Path, where: str = "") -> OutsideRoot:
        resolved = f"resolves to {real}, " if str(real) != str(path) else "is "
        reason = (
            f"{resolved}outside the dataset folder {self.folder}; a job reads only inside its data.source"
        )
        return OutsideRoot(f"{where + ': ' if where else ''}{path} {reason} (refused)", reason)

    # --- probing: absent outside ----------------------------------------------------------------------

    def is_file(self, path: str | Path) -> bool:
        return self.inside(path) and Path(path).is_file()

    def is_dir(self, path: str | Path) -> bool:
        return self.inside(path) and Path(path).is_dir()

    def glob(self, folder: str | Path, pattern: str) -> list[Path]:
        """`folder.glob(pattern)`, sorted; nothing for a folder outside. A match inside the folder that
        is a symlink leading out is listed: opening it is refused, with a message saying why."""
        if not self.is_dir(folder):
            return []
        return sorted(Path(folder).glob(pattern))

    # --- opening: checked on the file opened ----------------------------------------------------------

    def open(self, path: str | Path) -> BinaryIO:
        """The regular file at `path`, opened for reading. FileNotFoundError when it does not exist;
        OutsideRoot when it resolves outside, also when it changed between the check and the open;
        DataError for something that is not a regular file (a folder, a FIFO, a device)."""
        self.check(path)
        # O_NONBLOCK: opening a FIFO planted in a dataset must not hang the job (regular files ignore it).
        flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags)
        try:
            opened = os.fstat(fd)
            real = _real(path)
            try:
                now = os.stat(real)
            except OSError:
                now = None
            same = now is not None and (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino)
            if not (same and self._inside_real(real)):
                raise self._outside(path, real)
            if not stat.S_ISREG(opened.st_mode):
                raise DataError(f"{path}: not a regular file")
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def read_bytes(self, path: str | Path) -> bytes:
        with self.open(path) as f:
            return f.read()

    def read_text(self, path: str | Path, encoding: str = "utf-8") -> str:
        return self.read_bytes(path).decode(encoding)

    def image_size(self, path: str | Path) -> tuple[int, int]:
        """(width, height) from the image's header (`read_image_size`), opened through the root."""
        with self.open(path) as f:
            return read_image_size(f)


def read_image_size(image: Path | BinaryIO) -> tuple[int, int]:
    """(width, height) from an image file's header (a path, or a file open for reading), without
    decoding the pixels. Readers pass files opened through their DataRoot (`DataRoot.image_size`).

    Raises FileNotFoundError or ValueError with the reason when the file is missing or unreadable.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image) as im:
            return int(im.width), int(im.height)
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"not a readable image ({exc.__class__.__name__})") from None
