"""The job routes: thin functions over the store (service.views) and the scheduler. What a route
acts on comes from its dependencies (service.deps): the context, the caller, the job (or a 404).

Every route is a plain `def`: FastAPI runs it in its thread pool, so the blocking storage and Ray
calls never stall the event loop. Another tenant's job is a 404, exactly like a missing one.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Response

from service import views
from service.deps import CallerDep, Context, ContextDep, JobDep, not_found
from service.policy import check_job_spec
from service.records import JobEntry
from service.schemas import (
    AnchorHistory,
    JobAccepted,
    JobList,
    JobPublic,
    JobSummary,
    Logs,
    MetricsHistory,
    ResultPublic,
)
from trainer.config_errors import schedule_warnings
from trainer.contract.layout import BOXES_KEY, DATASET_KEY
from trainer.contract.spec import JobSpec, JobState
from trainer.contract.storage import NotFound
from trainer.contract.store import IdempotencyConflict, JobExists, UnknownJob, idempotent_job_id

router = APIRouter(prefix="/jobs", tags=["jobs"])
# CSI sequences (colours, cursor moves: ESC [ ... letter) and two-character escapes (ESC letter).
ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")

CONTENT_TYPES = {
    ".json": "application/json",
    ".yaml": "application/yaml",
    ".cfg": "text/plain",
    ".png": "image/png",
}  # everything else (weights.pt, boxes.npy) is application/octet-stream


@router.post("", status_code=201, response_model=JobAccepted)
def submit_job(
    spec: JobSpec,
    response: Response,
    ctx: ContextDep,
    caller: CallerDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JobAccepted:
    """Records a job (QUEUED) and queues it for Ray. With an `Idempotency-Key`, sending the same
    key and body again returns the same job; the same key with another body is a 409. `warnings`
    says what in the spec will likely surprise (a warm-up as long as the run)."""
    roots = list(caller.dataset_roots) if caller.dataset_roots is not None else None
    try:
        spec = check_job_spec(spec, ctx.settings, roots)  # as it will run: data.allowed_root set
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        replay_of = idempotent_job_id(caller.tenant, idempotency_key) if idempotency_key is not None else None
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    _within_tenant_limits(ctx, caller.tenant, spec, replay_of=replay_of)
    try:
        record, replayed = ctx.store.submit(spec, caller.tenant, idempotency_key=idempotency_key)
    except IdempotencyConflict as exc:
        raise HTTPException(409, str(exc)) from None
    except JobExists:  # a generated id that is taken (3 random bytes per second): not a replay
        raise HTTPException(409, "the generated job id is taken; submit again") from None
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    ctx.records.add(record)
    ctx.scheduler.kick()
    response.headers["Location"] = f"/jobs/{record.id}"
    try:
        summary = views.summary(JobEntry.of(record), ctx.store.status(record.id))
    except UnknownJob:  # deleted at once by someone else
        ctx.records.forget(record.id)
        raise not_found(record.id) from None
    warnings = schedule_warnings(spec, workers=spec.resources.workers)
    return JobAccepted(**summary.model_dump(), warnings=warnings)


def _within_tenant_limits(ctx: Context, tenant: str, spec: JobSpec, replay_of: str | None) -> None:
    """A job its tenant's GPU limit could never start is a 422; a submit over the tenant's queued-job
    limit is a 429 (not for the replay of a job already accepted). The count is read at submit:
    parallel submits may pass it by the few that race."""
    r = spec.resources
    max_gpus = ctx.settings.tenant_limit(tenant, "max_gpus")
    if max_gpus is not None and r.workers * r.gpus_per_worker > max_gpus:
        raise HTTPException(
            422,
            f"resources.gpus_per_worker: {r.workers} worker(s) x {r.gpus_per_worker:g} GPUs is more than "
            f"the {max_gpus:g} GPUs tenant {tenant!r} may use at once",
        )
    if replay_of is not None and ctx.store.exists(replay_of):
        return
    limit = ctx.settings.tenant_limit(tenant, "max_queued_jobs")
    queued = ctx.scheduler.queued(tenant)
    if queued >= limit:
        raise HTTPException(
            429,
            f"tenant {tenant!r} has {queued} job(s) waiting to start, its limit (max_queued_jobs); submit "
            "again once some have started, or cancel some",
            headers={"Retry-After": str(max(1, round(ctx.settings.scheduler_interval_s * 5)))},
        )


@router.get("", response_model=JobList)
def list_jobs(
    ctx: ContextDep,
    caller: CallerDep,
    state: JobState | None = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=views.MAX_PAGE)] = views.DEFAULT_PAGE,
) -> JobList:
    """The caller's jobs, newest first; `state` filters, `next_cursor` pages."""
    ctx.records.refresh()
    try:
        return views.page(ctx.records, caller.tenant, state, cursor, limit)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job: JobDep, ctx: ContextDep) -> JobPublic:
    return views.public(ctx.store, ctx.records, job)


@router.post("/{job_id}/cancel", response_model=JobSummary)
def cancel_job(job: JobDep, ctx: ContextDep) -> JobSummary:
    """Stops the job (its Ray job, when it has one) and marks it CANCELLED. Cancelling a cancelled
    job changes nothing; a job that already SUCCEEDED or FAILED is a 409."""
    status = ctx.scheduler.cancel(job.id)
    if status.state is not JobState.CANCELLED:
        raise HTTPException(409, f"job {job.id} already ended: {status.state}")
    return views.summary(JobEntry.of(job), status)


@router.delete("/{job_id}", status_code=204, response_class=Response)
def delete_job(job: JobDep, ctx: ContextDep) -> Response:
    """Deletes an ended job (SUCCEEDED, FAILED, CANCELLED) and every object under its prefix: its
    outputs, checkpoints and artifacts. A job still queued or running is a 409: cancel it first."""
    status = ctx.store.status(job.id)
    if not status.state.terminal:
        raise HTTPException(409, f"job {job.id} is {status.state}: cancel it first, then delete it")
    ctx.store.delete(job.id)
    ctx.records.forget(job.id)
    return Response(status_code=204)


@router.get("/{job_id}/anchors", response_model=AnchorHistory)
def anchors(
    job: JobDep, ctx: ContextDep, since_step: Annotated[int | None, Query(ge=-1)] = None
) -> AnchorHistory:
    """Every anchor snapshot in step order; `since_step` keeps only later ones (for polling)."""
    return AnchorHistory(job_id=job.id, snapshots=ctx.store.snapshots(job.id, since_step))


@router.get("/{job_id}/anchors/latest")
def latest_anchors(job: JobDep, ctx: ContextDep):
    latest = ctx.store.latest_snapshot(job.id)
    if latest is None:
        raise HTTPException(404, f"job {job.id} has no anchor snapshot yet")
    return latest


@router.get(
    "/{job_id}/anchors/plot.png", response_class=Response, responses={200: {"content": {"image/png": {}}}}
)
def anchors_plot(job: JobDep, ctx: ContextDep) -> Response:
    """The paper's Figure 2 for this job so far: training-box density in log w-h, with each
    anchor's path from its start to the latest snapshot."""
    snaps = ctx.store.snapshots(job.id)
    if not snaps:
        raise HTTPException(404, f"job {job.id} has no anchor snapshot yet")
    return Response(ctx.plots.draw(job.id, snaps), media_type="image/png")


@router.get("/{job_id}/metrics", response_model=MetricsHistory)
def metrics(job: JobDep, ctx: ContextDep) -> MetricsHistory:
    return MetricsHistory(job_id=job.id, epochs=ctx.store.metrics(job.id))


@router.get("/{job_id}/logs", response_model=Logs)
def logs(job: JobDep, ctx: ContextDep, tail: Annotated[int | None, Query(ge=1, le=10_000)] = None) -> Logs:
    """The last lines of the job's driver log, as text: terminal escape codes (Ray's and rich's
    colours) taken out, since a log read over HTTP is read as text."""
    text = ctx.scheduler.logs(job.id, tail or ctx.settings.log_tail_lines)
    return Logs(job_id=job.id, lines=ANSI_ESCAPE.sub("", text or "").splitlines())


@router.get("/{job_id}/result", response_model=ResultPublic)
def result(job: JobDep, ctx: ContextDep) -> ResultPublic:
    found = ctx.store.result(job.id)
    if found is None:
        raise HTTPException(404, f"job {job.id} has no result yet")
    return ResultPublic(job_id=job.id, result=found, artifacts=views.artifact_urls(job.id, found.artifacts))


@router.get("/{job_id}/artifacts/{name}", response_class=Response)
def artifact(job: JobDep, name: str, ctx: ContextDep) -> Response:
    """One of result.json's artifacts by name (anchors_json, anchors_yaml, anchors_cfg, weights,
    anchors_plot, ...), plus `dataset` and `boxes` while the job runs."""
    store, job_id = ctx.store, job.id
    found = store.result(job_id)
    keys = {"dataset": DATASET_KEY, "boxes": BOXES_KEY} | (found.artifacts if found else {})
    key = keys.get(name)
    if key is None or key.endswith("/"):
        raise HTTPException(404, f"job {job_id} has no artifact {name!r} (known: {', '.join(sorted(keys))})")
    try:
        data = store.storage.read_bytes(store.key(job_id, key))
    except NotFound:
        raise HTTPException(404, f"job {job_id}: artifact {name!r} is not written yet") from None
    media = CONTENT_TYPES.get("." + key.rsplit(".", 1)[-1], "application/octet-stream")
    filename = key.rsplit("/", 1)[-1]
    return Response(data, media_type=media, headers={"Content-Disposition": f'inline; filename="{filename}"'})
