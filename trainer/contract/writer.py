"""RunWriter: one run's objects (trainer.contract.layout names their keys) under a local folder or an
`s3://bucket/prefix`; every object is written whole (trainer.contract.storage), so a reader never sees
half a file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from trainer.contract.documents import JobStatus
from trainer.contract.layout import RUN_KEYS, RUN_PREFIXES, SNAPSHOT_PREFIX, STATUS_KEY
from trainer.contract.storage import NotFound, Storage, StorageSettings, open_storage
from trainer.contract.transitions import Change, transition


class RunWriter:
    """Reads and writes a run's objects by key ("anchors/00000025.json") under a folder or an
    `s3://bucket/prefix` (trainer.contract.storage: whole-object writes, so readers never see half a file)."""

    def __init__(self, root: str | Path | Storage, settings: StorageSettings | None = None):
        self.storage = root if isinstance(root, Storage) else open_storage(str(root), settings)
        # What the run reads S3 with (its s3:// data source too), as its entry point read them; None
        # for a run that touches no S3.
        self.settings = settings if settings is not None else getattr(self.storage, "settings", None)

    @property
    def uri(self) -> str:
        return self.storage.uri

    def write_bytes(self, key: str, data: bytes) -> None:
        self.storage.write_bytes(key, data)

    def write_json(self, key: str, obj: Any) -> None:
        """Writes `obj` as JSON; NaN and infinities (undefined metrics) become null."""
        self.write_bytes(key, (json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n").encode())

    def read_bytes(self, key: str) -> bytes:
        return self.storage.read_bytes(key)

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    def exists(self, key: str) -> bool:
        return self.storage.exists(key)

    def keys(self, prefix: str) -> list[str]:
        """Keys under `prefix` ("anchors/"), sorted."""
        return [o.key for o in self.storage.list(prefix)]

    def snapshots(self) -> list[dict]:
        return [self.read_json(k) for k in self.keys(SNAPSHOT_PREFIX)]

    def status(self) -> JobStatus | None:
        """The run's status.json, None before the first."""
        try:
            return JobStatus.model_validate_json(self.read_bytes(STATUS_KEY))
        except NotFound:
            return None

    def update_status(self, reopen: bool = False, **changes: Any) -> JobStatus:
        """Sets `changes` in status.json (trainer.contract.transitions: a compare-and-swap over the
        current document, validated against the schema, `updated_at` stamped); returns what is stored.

        A run that has ended (SUCCEEDED, FAILED, CANCELLED) stays as it is: the call changes nothing
        and returns the ended status, so a worker still reporting progress cannot undo a cancel the
        service recorded, even when the two race. Only `reopen=True` (a run resumed on purpose)
        starts it again.
        """
        return self.transition(changes, reopen=reopen)

    def transition(self, change: Change, reopen: bool = False) -> JobStatus:
        """`update_status` with a change that may depend on the status read (a function of it)."""
        return transition(self.storage, STATUS_KEY, change, reopen=reopen)

    def start_attempt(self) -> JobStatus:
        """Counts a start of the run's training (each Ray Train worker group's, or an in-process
        run's): `attempt` becomes the number of starts before this one. Counted when an attempt
        starts, before it reads data or a checkpoint, not once it reports progress: an attempt that
        dies before reporting (bad data, a lost worker, a store it cannot write) was an attempt too."""
        return self.transition(lambda s: {"attempt": s.starts, "starts": s.starts + 1})

    def clear(self) -> None:
        """Removes a previous run's outputs (snapshots, metrics, result, checkpoint, artifacts)."""
        for prefix in RUN_PREFIXES:
            for key in self.keys(prefix):
                self.storage.delete(key)
        for key in RUN_KEYS:
            self.storage.delete(key)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj
