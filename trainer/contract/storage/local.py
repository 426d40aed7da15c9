"""LocalStorage, a folder as a storage, and write_atomically, the temp-file-then-rename write it uses."""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from trainer.contract.storage.base import (
    TMP_PREFIX,
    AlreadyExists,
    NotFound,
    ObjectInfo,
    PreconditionFailed,
    Storage,
    StorageError,
    Versioned,
    check_folder,
    check_key,
)

COPY_CHUNK = 1 << 20


def write_atomically(dest: Path, fill: Callable[[BinaryIO], object], uri: str, *, if_absent=False) -> None:
    """Writes a temp file beside `dest` with `fill`, then moves it onto `dest` in one step.

    `os.replace` swaps whole files; with `if_absent`, `os.link` instead fails when `dest` exists
    (AlreadyExists), so a conditional create never overwrites and never shows a partial file.
    """
    tmp = dest.with_name(f"{TMP_PREFIX}{dest.name[:96]}.{secrets.token_hex(6)}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())  # data on disk before the rename makes it visible
        if if_absent:
            try:
                os.link(tmp, dest)
            except FileExistsError:
                raise AlreadyExists(f"{uri}: already exists (conditional create refused)", uri) from None
        else:
            os.replace(tmp, dest)
    except OSError as exc:
        raise StorageError(f"{uri}: write failed: {exc}", uri) from exc
    finally:
        tmp.unlink(missing_ok=True)  # after a link, or after a failure


@contextmanager
def _locked(path: Path, uri: str) -> Iterator[None]:
    """Holds an exclusive flock on the lock file beside `path` (named with TMP_PREFIX, so never listed
    and never a key) while the block runs: one compare-and-swap of the key at a time, across threads
    and processes, on NFS too (a lock file, not the folder: NFS locks need a file open for writing).
    The lock file stays: removing it would race a writer already waiting on it."""
    lock = path.with_name(f"{TMP_PREFIX}{path.name[:96]}.lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(f"{uri}: write failed: cannot open its lock: {exc}", uri) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def content_version(data: bytes) -> str:
    """A local object's version: what its bytes are, not when or how they were written. A stat
    identity (inode, mtime, size) would not do: inodes are reused and mtimes are coarse, so a key
    rewritten twice within a clock tick could look unchanged."""
    return hashlib.sha256(data).hexdigest()


@contextmanager
def _reading(uri: str) -> Iterator[None]:
    """A missing file, or a folder where a file was asked for, is NotFound; other OS errors StorageError."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise NotFound(f"{uri}: no such object", uri) from None
    except OSError as exc:
        raise StorageError(f"{uri}: {exc}", uri) from exc


class LocalStorage(Storage):
    """A folder. Every write goes to a temp file beside the key's file, then `os.replace` onto it."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key, self.uri_for(key))

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        with _reading(self.uri_for(key)):
            return path.read_bytes()

    def read_versioned(self, key: str) -> Versioned:
        data = self.read_bytes(key)  # one file, whole: a rewrite replaces the file, never edits it
        return Versioned(data, content_version(data))

    def write_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, if_match: str | None = None
    ) -> None:
        path, uri = self._path(key), self.uri_for(key)
        if if_match is None:
            write_atomically(path, lambda f: f.write(data), uri, if_absent=if_absent)
            return
        if if_absent:
            raise ValueError("write_bytes: if_absent and if_match exclude each other")
        with _locked(path, uri):  # compare, then replace, with no other compare-and-swap in between
            try:
                current = path.read_bytes()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                current = None
            except OSError as exc:
                raise StorageError(f"{uri}: write failed: {exc}", uri) from exc
            if current is None or content_version(current) != if_match:
                raise PreconditionFailed(f"{uri}: changed since it was read (conditional write refused)", uri)
            write_atomically(path, lambda f: f.write(data), uri)

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        with _reading(self.uri_for(key)):
            st = path.stat()
            if not path.is_file():
                raise IsADirectoryError(key)
        return ObjectInfo(key, st.st_size, f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}")

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        check_key(prefix, self.uri_for(prefix), prefix=True)
        found = []
        # Only the folder named by the prefix's complete parts can hold matches.
        for dirpath, dirnames, filenames in os.walk(self.root / prefix.rpartition("/")[0]):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            base = "" if rel == "." else rel + "/"
            # Descend only into folders that lie inside the prefix or on the way to it.
            dirnames[:] = [d for d in dirnames if (base + d + "/").startswith(prefix[: len(base + d) + 1])]
            for name in filenames:
                key = base + name
                if key.startswith(prefix) and not name.startswith(TMP_PREFIX):
                    try:
                        found.append(self.stat(key))
                    except NotFound:  # deleted while listing
                        continue
        return sorted(found, key=lambda o: o.key)

    def folders(self, prefix: str = "") -> list[str]:
        uri = self.uri_for(check_folder(prefix, self.uri_for(prefix)))
        try:
            with os.scandir(self.root / prefix) as entries:
                return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith(TMP_PREFIX))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StorageError(f"{uri}: {exc}", uri) from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass  # no object there (a folder is not an object)
        except OSError as exc:
            raise StorageError(f"{self.uri_for(key)}: delete failed: {exc}", self.uri_for(key)) from exc

    def download(self, key: str, dest: Path) -> None:
        path, uri = self._path(key), self.uri_for(key)
        with _reading(uri), open(path, "rb") as src:
            write_atomically(Path(dest), lambda f: shutil.copyfileobj(src, f, COPY_CHUNK), uri)
