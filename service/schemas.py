"""The API's request and response bodies (OpenAPI at /docs is generated from these).

A job is submitted as a `JobSpec` (trainer.contract.spec: a training config plus `name` and
`resources`; unknown fields are errors). Everything returned about a job is built from its
documents in the store (trainer.contract.documents), so a restarted service answers exactly as before.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from trainer.contract.documents import AnchorSnapshot, EpochMetrics, JobResult
from trainer.contract.spec import JobSpec, JobState


class Links(BaseModel):
    """Where to find the rest of a job (paths on this API)."""

    self: str
    anchors: str
    anchors_latest: str
    anchors_plot: str
    metrics: str
    logs: str
    result: str
    cancel: str


class Progress(BaseModel):
    step: int = 0
    total_steps: int | None = None
    epoch: int = 0
    epochs: int | None = None
    phase: str | None = None  # "warmup" (anchor tricks on) or "main"
    workers: int | None = None
    images_per_s: float | None = None
    eta_s: float | None = None
    attempt: int = 0  # restarts from a checkpoint after a worker failure
    # Why the job is not running (yet): queued behind its tenant's limits or the service's slots, or
    # started and waiting for the cluster's resources. None once it trains.
    waiting: str | None = None


class JobSummary(BaseModel):
    """One line of `GET /jobs`."""

    id: str
    name: str | None
    state: JobState
    submitted_at: float
    progress: Progress
    links: Links


class JobAccepted(JobSummary):
    """`POST /jobs`: the job's summary, and what in its spec will likely surprise (e.g. a warm-up as
    long as the whole run; trainer.config_errors.schedule_warnings). The job is accepted either way."""

    warnings: list[str] = Field(default_factory=list)


class JobPublic(JobSummary):
    """`GET /jobs/{id}`: spec, state, progress, latest anchors and metrics, error, times, artifacts."""

    spec: JobSpec
    submitted_by: str | None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float
    latest_anchors: AnchorSnapshot | None = None
    latest_metrics: EpochMetrics | None = None
    artifacts: dict[str, str] = Field(default_factory=dict)  # name -> URL, once the job has a result


class JobList(BaseModel):
    items: list[JobSummary]
    next_cursor: str | None = None  # pass as ?cursor= for the next page; null on the last


class AnchorHistory(BaseModel):
    job_id: str
    snapshots: list[AnchorSnapshot]  # in step order; only those after ?since_step= when given


class MetricsHistory(BaseModel):
    job_id: str
    epochs: list[EpochMetrics]


class ResultPublic(BaseModel):
    job_id: str
    result: JobResult
    artifacts: dict[str, str]  # name -> URL


class Logs(BaseModel):
    job_id: str
    lines: list[str]  # the last lines of the job's driver log, oldest first


class Problem(BaseModel):
    """Every 4xx and 5xx body: what went wrong, and for invalid input which fields."""

    status: int
    detail: str
    errors: list[dict] | None = None  # per-field problems: {"loc": [...], "msg": ..., "type": ...}
