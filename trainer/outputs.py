"""A run's outputs in a folder, laid out like a job's prefix in storage (DESIGN.md, "Storage layout"):

    config.yaml                 the resolved configuration
    dataset.json                dataset summary of both splits: images, boxes, classes, bad data
    anchors/<step:08d>.json     anchor snapshot: step, epoch, anchors in px and grid cells, fit metrics
    metrics/<epoch:04d>.json    per-epoch losses, learning rates, evaluation
    result.json                 final anchors, metrics, artifact keys
    checkpoints/last.pt         exact resume point
    artifacts/*.png             anchors over the box distribution, loss curves

Keys are zero-padded so that a plain listing is in step order. Every object is written whole
(write to a temporary name, then rename), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

SNAPSHOT_PREFIX = "anchors/"
METRICS_PREFIX = "metrics/"
RESULT_KEY = "result.json"
CONFIG_KEY = "config.yaml"
DATASET_KEY = "dataset.json"
CHECKPOINT_KEY = "checkpoints/last.pt"
ANCHORS_PLOT_KEY = "artifacts/anchors.png"
LOSSES_PLOT_KEY = "artifacts/losses.png"


def snapshot_key(step: int) -> str:
    return f"{SNAPSHOT_PREFIX}{step:08d}.json"


def metrics_key(epoch: int) -> str:
    return f"{METRICS_PREFIX}{epoch:04d}.json"


class RunWriter:
    """Reads and writes a run's objects under `root` by key ("anchors/00000025.json")."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root.resolve() not in p.parents:
            raise ValueError(f"key {key!r} escapes the run folder")
        return p

    def write_bytes(self, key: str, data: bytes) -> Path:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; a run's outputs are for everyone who can read it
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def write_json(self, key: str, obj: Any) -> Path:
        """Writes `obj` as JSON; NaN and infinities (undefined metrics) become null."""
        return self.write_bytes(key, (json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n").encode())

    def read_json(self, key: str) -> Any:
        return json.loads(self.path(key).read_text())

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def keys(self, prefix: str) -> list[str]:
        """Keys under `prefix` ("anchors/"), sorted, temporary files excluded."""
        folder = self.path(prefix.rstrip("/"))
        if not folder.is_dir():
            return []
        return sorted(
            f"{prefix}{p.name}" for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
        )

    def snapshots(self) -> list[dict]:
        return [self.read_json(k) for k in self.keys(SNAPSHOT_PREFIX)]

    def clear(self) -> None:
        """Removes a previous run's outputs (snapshots, metrics, result, checkpoint, artifacts)."""
        for prefix in (SNAPSHOT_PREFIX, METRICS_PREFIX, "artifacts/", "checkpoints/"):
            for key in self.keys(prefix):
                self.path(key).unlink()
        for key in (RESULT_KEY, CONFIG_KEY):
            self.path(key).unlink(missing_ok=True)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj
