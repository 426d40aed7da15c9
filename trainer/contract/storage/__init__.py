"""Objects by key in a local folder or an S3-compatible bucket, and a local mirror of S3 datasets.

    store = open_storage("s3://anchor-opt/jobs", settings)   # or "file:///srv/anchor-opt", "./runs"
    store.write_bytes("abc/status.json", data)                 # whole object, atomic
    store.write_bytes("abc/job.json", data, if_absent=True)    # conditional create, else AlreadyExists
    got = store.read_versioned("abc/status.json")              # bytes, and the version they are
    store.write_bytes("abc/status.json", b, if_match=got.version)  # unless changed: PreconditionFailed
    store.read_bytes("abc/status.json"); store.list("abc/"); store.delete("abc/status.json")
    store.folders("")                                          # ["abc"]: one level, keys below unread
    fetch_to_cache("s3://datasets/voc/VOC2007").local_path     # mirrored once, keyed by ETag

Both backends behave the same (one test suite runs over both): keys are `/`-separated paths relative
to the storage's root, objects are written whole (a reader sees the old or the new object, never part
of one), a conditional write is one atomic compare-and-swap (so read-modify-write cycles of one key
racing each other never lose an update), `list` is recursive and sorted, `folders` one level deep.
The trainer and the control plane share this package, so it imports neither torch nor anything of
theirs.

Modules: `base` (errors, settings, ObjectInfo, key checks, the Storage ABC), `local` (LocalStorage,
write_atomically), `s3` (S3Storage, clients), `uri` (parse_uri, open_storage), `mirror`
(fetch_to_cache). Import from here; the split is an implementation detail.
"""

from __future__ import annotations

from trainer.contract.storage.base import (
    TMP_PREFIX,
    AlreadyExists,
    InvalidKey,
    NotFound,
    ObjectInfo,
    PreconditionFailed,
    Storage,
    StorageError,
    StorageSettings,
    Versioned,
    check_key,
)
from trainer.contract.storage.local import LocalStorage, write_atomically
from trainer.contract.storage.mirror import LOCK_NAME, MANIFEST_NAME, FetchResult, fetch_to_cache, mirror_path
from trainer.contract.storage.s3 import S3Storage, s3_client
from trainer.contract.storage.uri import open_storage, parse_uri

__all__ = [
    "LOCK_NAME",
    "MANIFEST_NAME",
    "TMP_PREFIX",
    "AlreadyExists",
    "FetchResult",
    "InvalidKey",
    "LocalStorage",
    "NotFound",
    "ObjectInfo",
    "PreconditionFailed",
    "S3Storage",
    "Storage",
    "StorageError",
    "StorageSettings",
    "Versioned",
    "check_key",
    "fetch_to_cache",
    "mirror_path",
    "open_storage",
    "parse_uri",
    "s3_client",
    "write_atomically",
]
