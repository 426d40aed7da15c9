"""A Ray job's resources: checked against a fixed cluster before it starts, and waited for on one
that may grow.

Waiting for resources: Ray Train 2.60 waits for its workers' placement silently, for ever (each
attempt times out after RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S and the next begins). `ResourceWait`,
a callback in Ray Train's controller, writes why into status.json (`waiting: "waiting for
resources: 4 workers x 1 GPU; the cluster has 0 GPUs free"`), clears it once the workers are placed,
and ends the run with `ResourcesUnavailable` once ANCHOR_OPT_RESOURCE_WAIT_S (default 1800) have
passed without them.
"""

from __future__ import annotations

import logging
import os
import time

from trainer.train.local_ray import set_ray_defaults

set_ray_defaults()  # before Ray is imported

import ray  # noqa: E402
from ray.train.v2._internal.constants import WORKER_GROUP_START_TIMEOUT_S_ENV_VAR  # noqa: E402
from ray.train.v2._internal.execution.callback import ControllerCallback, WorkerGroupCallback  # noqa: E402

from trainer.contract.spec import DEFAULT_RESOURCE_WAIT_S, RESOURCE_WAIT_ENV, Resources  # noqa: E402
from trainer.contract.storage import StorageSettings  # noqa: E402
from trainer.contract.writer import RunWriter  # noqa: E402

log = logging.getLogger(__name__)


def check_capacity(resources: Resources) -> None:
    """ValueError naming the field when the workers cannot fit the cluster as it is now. Without this
    Ray Train waits for the resources forever (it retries the worker group start every 60 s), which
    is right for an autoscaling cluster and wrong for a fixed one such as a local Ray: train_on_ray
    checks only a Ray that ensure_ray started."""
    have = ray.cluster_resources()
    need = {
        "CPU": ("resources.cpus_per_worker", resources.cpus_per_worker),
        "GPU": ("resources.gpus_per_worker", resources.gpus_per_worker),
    }
    for kind, (field, per_worker) in need.items():
        total = per_worker * resources.workers
        if total > have.get(kind, 0) + 1e-9:
            raise ValueError(
                f"{field}={per_worker:g} x resources.workers={resources.workers} needs {total:g} {kind}s; "
                f"the Ray cluster has {have.get(kind, 0):g}"
            )


class ResourcesUnavailable(RuntimeError):
    """The cluster did not place the job's workers within the wait allowed (ANCHOR_OPT_RESOURCE_WAIT_S)."""


def resource_wait_s() -> float:
    """Seconds a run may wait for its workers: ANCHOR_OPT_RESOURCE_WAIT_S (the service passes its
    `limits.resource_wait_s`), else DEFAULT_RESOURCE_WAIT_S. ValueError naming the variable."""
    raw = os.environ.get(RESOURCE_WAIT_ENV, "").strip()
    if not raw:
        return DEFAULT_RESOURCE_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ValueError(f"{RESOURCE_WAIT_ENV}={raw!r}: expected a positive number of seconds")
    return value


class ResourceWait(ControllerCallback, WorkerGroupCallback):
    """Runs in Ray Train's controller (pickled there with the trainer): says in status.json when the
    workers wait for resources, and ends the run once `timeout_s` pass without them.

    Before each worker group start (the first, a retry after Ray's placement timeout, a restart after
    a worker died) it compares what the workers need with `ray.available_resources()`; the placement
    attempt's own timeout is set to a tenth of `timeout_s` (1 to 60 s), so the wait is re-checked that
    often. Once placed, the message is cleared before the training function starts (so no write of
    rank 0 can race it) and a later restart gets a fresh `timeout_s`."""

    def __init__(self, root: str, settings: StorageSettings, resources: Resources, timeout_s: float):
        self.root, self.settings, self.timeout_s = root, settings, timeout_s
        self.workers = resources.workers
        self.per_worker = {"GPU": resources.gpus_per_worker} if resources.gpus_per_worker else {}
        self.per_worker["CPU"] = resources.cpus_per_worker
        self._since: float | None = None  # when the current wait for a placement began

    def after_controller_start(self, train_run_context) -> None:
        # In the controller's own process only; Ray Train reads it when it creates each worker group.
        # Shorter attempts only mean more frequent checks: a pending placement is retried at once.
        poll_s = min(60.0, max(1.0, self.timeout_s / 10))
        os.environ.setdefault(WORKER_GROUP_START_TIMEOUT_S_ENV_VAR, f"{poll_s:g}")

    def on_controller_start_worker_group(self, *, scaling_config, num_workers):
        now = time.monotonic()
        retry = self._since is not None  # the previous attempt did not start: its placement timed out
        if not retry:
            self._since = now
        try:
            available = ray.available_resources()
        except Exception:  # the GCS is busy: say nothing this time, keep counting
            log.warning("could not read the cluster's free resources", exc_info=True)
            available = None
        if retry and now - self._since >= self.timeout_s:
            self._write(None)
            raise ResourcesUnavailable(
                f"gave up after {self.timeout_s:g} s {self.message(available or {})} ({RESOURCE_WAIT_ENV}); "
                "lower resources.workers or what each worker asks for, or free the cluster"
            )
        if available is not None and (retry or self.short(available)):
            self._write(self.message(available))
        return None  # no label selector: Ray Train places the workers as it would

    def short(self, available: dict) -> bool:
        return any(n * self.workers > available.get(k, 0) + 1e-9 for k, n in self.per_worker.items())

    def message(self, available: dict) -> str:
        """'waiting for resources: 4 workers x 1 GPU, 8 CPUs; the cluster has 0 GPUs, 30 CPUs free'"""
        need = ", ".join(f"{n:g} {k}{'' if n == 1 else 's'}" for k, n in self.per_worker.items())
        free = ", ".join(f"{available.get(k, 0):g} {k}s" for k in self.per_worker)
        workers = f"{self.workers} worker{'' if self.workers == 1 else 's'}"
        return f"waiting for resources: {workers} x {need}; the cluster has {free} free"

    def after_worker_group_start(self, worker_group) -> None:
        self._since = None
        current = RunWriter(self.root, self.settings).status()
        if current is not None and current.waiting:
            self._write(None)

    def _write(self, waiting: str | None) -> None:
        try:
            RunWriter(self.root, self.settings).update_status(waiting=waiting)
        except Exception:  # storage unreachable: the wait goes on, and so does the run
            log.warning("could not write the resource wait to %s", self.root, exc_info=True)
