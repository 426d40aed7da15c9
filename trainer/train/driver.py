"""The job driver: `anchor-opt run-job JOB_ID --store URI`, the entry point a Ray job runs.

It reads the job's spec from the store, marks it RUNNING, trains it on Ray Train
(trainer.train.ray_run) with the spec's resources, and records how it ended in status.json:
SUCCEEDED once result.json is there, FAILED with the workers' error otherwise. Running it again for
the same job resumes from the job's last checkpoint (Ray Train keys checkpoints by the job's
prefix); a job already finished is left as it is.
"""

from __future__ import annotations

import logging
import time

from trainer.config import TrainConfig
from trainer.contract.documents import JobStatus
from trainer.contract.layout import RESULT_KEY
from trainer.contract.spec import DEFAULT_RESOURCE_WAIT_S, JobState, Resources
from trainer.contract.storage import StorageSettings, open_storage
from trainer.contract.store import JobStore
from trainer.contract.writer import RunWriter

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 4000  # status.json carries the end of a long error; Ray's logs keep all of it


def run_job(
    job_id: str,
    store_uri: str,
    settings: StorageSettings,
    *,
    ray_address: str | None = None,
    fault: dict | None = None,
    resource_wait_s: float = DEFAULT_RESOURCE_WAIT_S,
) -> JobStatus:
    """Runs job `job_id` of the store at `store_uri` to its end; returns its final status.

    `settings` are the storage settings the entry point read (`anchor-opt run-job`: the environment
    the service gave the Ray job); the workers get them too. UnknownJob if the store has no such
    job. `fault` is for tests (trainer.train.loop.run_loop)."""
    store = JobStore(open_storage(store_uri, settings))
    record = store.record(job_id)
    status = store.status(job_id)
    if status.state.terminal:
        log.warning("job %s is already %s; nothing to run", job_id, status.state)
        return status
    writer = RunWriter(store.run_uri(job_id), settings)
    spec = record.spec
    return train_to_end(
        writer, spec.train_config(), spec.resources, settings,
        ray_address=ray_address, fault=fault, resource_wait_s=resource_wait_s,
    )  # fmt: skip


def train_to_end(
    writer: RunWriter,
    cfg: TrainConfig,
    resources: Resources,
    settings: StorageSettings,
    *,
    ray_address: str | None = None,
    fault: dict | None = None,
    reopen: bool = False,
    resource_wait_s: float = DEFAULT_RESOURCE_WAIT_S,
) -> JobStatus:
    """Marks the run under `writer` RUNNING, trains it on Ray Train, records how it ended.

    A run that has already ended is returned as it is, untrained, unless `reopen` (the CLI resuming
    a run it interrupted): the service may have cancelled a job before its driver started."""
    before = writer.status()
    started = before.started_at if before and before.started_at else time.time()
    now = writer.update_status(
        reopen=reopen, state=JobState.RUNNING, started_at=started, error=None, finished_at=None
    )
    if now.state.terminal:
        log.warning("run under %s is already %s; not training it", writer.uri, now.state)
        return now
    try:
        from trainer.train.ray_run import train_on_ray  # torch and Ray only once there is work

        train_on_ray(
            cfg, writer.uri, resources, settings,
            ray_address=ray_address, fault=fault, resource_wait_s=resource_wait_s,
        )  # fmt: skip
    except Exception as exc:
        log.exception("training under %s failed", writer.uri)
        return writer.update_status(  # unless the run was cancelled meanwhile: that stays
            state=JobState.FAILED, error=failure_message(exc), finished_at=time.time()
        )
    if not writer.exists(RESULT_KEY):
        error = "training ended without writing result.json"
        return writer.update_status(state=JobState.FAILED, error=error, finished_at=time.time())
    return writer.update_status(state=JobState.SUCCEEDED, eta_s=0.0, finished_at=time.time())


def failure_message(exc: BaseException) -> str:
    """One readable message: each failed rank's error (Ray's WorkerGroupError), else the exception."""
    failures = getattr(exc, "worker_failures", None)
    if failures:
        text = "; ".join(f"rank {rank}: {_last_line(err)}" for rank, err in sorted(failures.items()))
        message = f"{len(failures)} worker(s) failed: {text}"
    else:
        message = f"{type(exc).__name__}: {exc}"
    return message if len(message) <= MAX_ERROR_CHARS else "..." + message[-MAX_ERROR_CHARS:]


def _last_line(err: BaseException) -> str:
    """The exception's last non-empty line (Ray wraps the worker's traceback around it)."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(err).__name__
