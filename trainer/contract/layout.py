"""Every key of a job's prefix, and the steps and epochs read back from keys. Nothing else in the
project builds or parses a key (DESIGN.md, "Storage layout").

    jobs/<id>/job.json                 the spec as accepted, who submitted it, when (the service)
    jobs/<id>/status.json              state, progress, last error (compare-and-swap writes)
    jobs/<id>/config.yaml              the resolved configuration
    jobs/<id>/dataset.json             what was read: images, boxes, classes, bad data, both splits
    jobs/<id>/boxes.npy                training boxes' (w, h) px at the input size, float32 [N, 2] (at
                                       most 50,000, a fixed sample): what the anchor pictures draw over
    jobs/<id>/anchors/<step:08d>.json  anchor snapshot: step, epoch, anchors in px and cells, fit metrics
    jobs/<id>/metrics/<epoch:04d>.json per-epoch losses, learning rates, evaluation
    jobs/<id>/result.json              final anchors, metrics, artifact keys
    jobs/<id>/checkpoints/...          exact resume points: last.pt in-process; Ray Train's
                                       checkpoint_<time>/checkpoint.pt
    jobs/<id>/artifacts/...            anchors over the box distribution, loss curves, the learned
                                       anchors as JSON/YAML/darknet cfg lines, the final weights

A run's keys are relative to its own root (a local run's folder, or a job's `jobs/<id>/` prefix), so a
local run and a job have the same layout. Steps and epochs are zero-padded so a plain listing is in
step order. No torch here: the control plane imports it.
"""

from __future__ import annotations

import re

JOBS_PREFIX = "jobs/"
JOB_KEY = "job.json"
STATUS_KEY = "status.json"
CONFIG_KEY = "config.yaml"
DATASET_KEY = "dataset.json"
BOXES_KEY = "boxes.npy"
RESULT_KEY = "result.json"
SNAPSHOT_PREFIX = "anchors/"
METRICS_PREFIX = "metrics/"
CHECKPOINT_PREFIX = "checkpoints/"
CHECKPOINT_KEY = CHECKPOINT_PREFIX + "last.pt"  # an in-process run's
RAY_RUN_NAME = CHECKPOINT_PREFIX.rstrip("/")  # Ray Train's run folder: checkpoints/checkpoint_<time>/
RAY_CHECKPOINT_FILE = "checkpoint.pt"  # inside each of Ray Train's checkpoint folders
ARTIFACTS_PREFIX = "artifacts/"
ANCHORS_PLOT_KEY = ARTIFACTS_PREFIX + "anchors.png"
LOSSES_PLOT_KEY = ARTIFACTS_PREFIX + "losses.png"
ANCHORS_JSON_KEY = ARTIFACTS_PREFIX + "anchors.json"
ANCHORS_YAML_KEY = ARTIFACTS_PREFIX + "anchors.yaml"
ANCHORS_CFG_KEY = ARTIFACTS_PREFIX + "anchors.cfg"
WEIGHTS_KEY = ARTIFACTS_PREFIX + "weights.pt"

RUN_PREFIXES = (SNAPSHOT_PREFIX, METRICS_PREFIX, ARTIFACTS_PREFIX, CHECKPOINT_PREFIX)  # what a run writes
RUN_KEYS = (RESULT_KEY, CONFIG_KEY, DATASET_KEY, STATUS_KEY, BOXES_KEY)  # ... beside job.json

_NUMBERED = re.compile(r"(?:^|/)(?:anchors|metrics)/(\d+)\.json$")


def snapshot_key(step: int) -> str:
    return f"{SNAPSHOT_PREFIX}{step:08d}.json"


def metrics_key(epoch: int) -> str:
    return f"{METRICS_PREFIX}{epoch:04d}.json"


def job_key(job_id: str, name: str = "") -> str:
    """The key of `name` ("status.json", snapshot_key(100)) under job `job_id`'s prefix, relative to
    the store's root. The id is not checked here (JobStore does)."""
    return f"{JOBS_PREFIX}{job_id}/{name}"


def number_of(key: str) -> int:
    """The step of a snapshot key or the epoch of a metrics key, under any prefix:
    `jobs/<id>/anchors/00000100.json` -> 100, `metrics/0003.json` -> 3. ValueError for other keys."""
    found = _NUMBERED.search(key)
    if found is None:
        raise ValueError(f"not a snapshot or metrics key: {key!r}")
    return int(found.group(1))
