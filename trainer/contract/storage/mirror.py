"""fetch_to_cache: a local mirror of S3 datasets, <cache_dir>/s3/<bucket>/<key>, kept fresh by ETag.

A manifest at each bucket's mirror root remembers the ETag of every file downloaded, and a lock file
beside it serialises fetches of one bucket between processes (DDP workers on one node).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from trainer.contract.storage.base import InvalidKey, NotFound, StorageSettings, check_key
from trainer.contract.storage.local import write_atomically
from trainer.contract.storage.s3 import S3Storage
from trainer.contract.storage.uri import parse_uri

try:  # serialises fetches of one bucket between processes (DDP workers on one node); POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

log = logging.getLogger(__name__)

MANIFEST_NAME = ".anchor-opt-etags.json"  # at a bucket's mirror root: {"etags": {key: etag}}
LOCK_NAME = ".anchor-opt-etags.lock"


@dataclass
class FetchResult:
    local_path: Path  # the mirrored folder, or the file when the URI names one object
    downloaded: int  # objects downloaded by this call
    cached: int  # objects already in the cache with the same ETag
    bytes_downloaded: int


@contextmanager
def _mirror_lock(mirror: Path) -> Iterator[None]:
    """One fetch per bucket mirror at a time, so files and manifest entries always agree."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(mirror / LOCK_NAME, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _load_manifest(path: Path) -> dict[str, str]:
    """key -> etag of the files in a mirror; an unreadable manifest only costs re-downloads."""
    try:
        etags = json.loads(path.read_text())["etags"]
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable cache manifest (%s); objects will be downloaded again", path, exc)
        return {}
    safe = {}
    for key, etag in etags.items():
        try:
            safe[check_key(key, str(path))] = str(etag)  # never trust a key to stay inside the mirror
        except InvalidKey:
            continue
    return safe


def mirror_path(uri: str, settings: StorageSettings) -> Path:
    """Where fetch_to_cache mirrors an s3:// URI: <cache_dir>/s3/<bucket>/<key>; InvalidKey for a key
    that would leave the bucket's mirror ("a/../../x"), ValueError for a URI that is not s3://."""
    where = parse_uri(uri)
    if isinstance(where, Path):
        raise ValueError(f"{uri!r}: not an s3:// URI")
    _, bucket, key_path = where
    folder = key_path.strip("/")
    mirror = settings.cache_dir / "s3" / bucket
    return mirror / check_key(folder, f"s3://{bucket}/{folder}") if folder else mirror


def fetch_to_cache(
    uri: str,
    settings: StorageSettings,
    progress: Callable[[int, int], None] | None = None,
) -> FetchResult:
    """Mirrors every object under an s3:// URI into `settings.cache_dir`/s3/<bucket>/<key>.

    An object is downloaded only when its file is missing, its size differs, or its ETag changed
    since the last fetch (a manifest at the bucket's mirror root remembers them), so a second call
    downloads nothing. Files of this mirror whose objects are gone from under the URI are removed.
    Local paths and file:// URIs are returned as they are. `progress(done, total)` is called once
    per object, cached ones included. NotFound when there is nothing under the URI.
    """
    where = parse_uri(uri)
    if isinstance(where, Path):
        if not where.exists():
            raise NotFound(f"{uri}: no such file or folder", uri)
        return FetchResult(where, 0, 0, 0)
    _, bucket, key_path = where
    local = mirror_path(uri, settings)  # checks the key: nothing is listed for one that leaves the mirror
    store = S3Storage(bucket, "", settings)
    folder = key_path.strip("/")
    objects = store.list(folder + "/" if folder else "")
    single = not objects and bool(folder) and not key_path.endswith("/")
    if single:  # the URI may name one object
        with suppress(NotFound):
            objects = [store.stat(folder)]
    if not objects:
        raise NotFound(f"{uri}: no objects under this URI", uri)
    for obj in objects:
        check_key(obj.key, store.uri_for(obj.key))  # e.g. "a/../../x" would escape the mirror
        if obj.key in (MANIFEST_NAME, LOCK_NAME):
            raise InvalidKey(f"{store.uri_for(obj.key)}: name reserved for the cache's manifest", uri)

    mirror = settings.cache_dir / "s3" / bucket
    mirror.mkdir(parents=True, exist_ok=True)
    total, done, downloaded, nbytes = len(objects), 0, 0, 0
    with _mirror_lock(mirror):
        etags = _load_manifest(mirror / MANIFEST_NAME)
        todo = []
        for obj in objects:
            path = mirror / obj.key
            if etags.get(obj.key) == obj.etag and path.is_file() and path.stat().st_size == obj.size:
                done += 1
                if progress:
                    progress(done, total)
            else:
                todo.append(obj)
        cached = done
        if not single:
            listed, scope = {o.key for o in objects}, folder + "/" if folder else ""
            gone = [k for k in etags if k.startswith(scope) and k not in listed]
            for key in gone:
                (mirror / key).unlink(missing_ok=True)
                del etags[key]
            if gone:
                log.info("%s: removed %d cached files whose objects are gone", uri, len(gone))
        pool = ThreadPoolExecutor(max_workers=settings.download_workers)
        try:
            # The ETag recorded is the listed one: if an object changes while it downloads, the
            # next fetch sees a different ETag and downloads it again (never the reverse).
            futures = {pool.submit(store.download, o.key, mirror / o.key): o for o in todo}
            for future in as_completed(futures):
                future.result()
                obj = futures[future]
                etags[obj.key] = obj.etag
                done, downloaded, nbytes = done + 1, downloaded + 1, nbytes + obj.size
                log.debug("downloaded %s (%d bytes)", store.uri_for(obj.key), obj.size)
                if progress:
                    progress(done, total)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            # Saved even after a failure, so the objects already downloaded stay cached.
            manifest = json.dumps({"etags": dict(sorted(etags.items()))}, indent=0).encode()
            write_atomically(mirror / MANIFEST_NAME, lambda f: f.write(manifest), str(mirror / MANIFEST_NAME))
    return FetchResult(local, downloaded, cached, nbytes)
