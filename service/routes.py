"""The job routes: thin functions over the store (service.views) and the scheduler.

Every route is a plain `def`: FastAPI runs it in its thread pool, so the blocking storage and Ray
calls never stall the event loop. Another tenant's job is a 404, exactly like a missing one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response

from service import views
from service.auth import Principal
from service.policy import check_job_spec
from service.schemas import AnchorHistory, JobList, JobPublic, JobSummary, Logs, MetricsHistory, ResultPublic
from trainer.contract.layout import BOXES_KEY, DATASET_KEY
from trainer.contract.spec import JobSpec, JobState
from trainer.contract.storage import NotFound
from trainer.contract.store import JobExists, JobStore, UnknownJob

router = APIRouter(prefix="/jobs", tags=["jobs"])
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces
CONTENT_TYPES = {
    ".json": "application/json",
    ".yaml": "application/yaml",
    ".cfg": "text/plain",
    ".png": "image/png",
}  # everything else (weights.pt, boxes.npy) is application/octet-stream


def principal(request: Request) -> Principal:
    return request.state.principal  # set by service.auth.AuthenticateFirst before the body is read


Caller = Annotated[Principal, Depends(principal)]


def _ctx(request: Request):
    return request.app.state.ctx


def _record(request: Request, job_id: str, caller: Principal):
    try:
        return views.owned(_ctx(request).records, job_id, caller.tenant)
    except (views.JobNotFound, ValueError):  # ValueError: not even a valid id, or a garbage job.json
        raise HTTPException(404, f"job {job_id!r} not found") from None


@contextmanager
def _existing(request: Request, job_id: str) -> Iterator[None]:
    """A job deleted from the store after its record was cached is a 404 (and forgotten), as if it
    had never been."""
    try:
        yield
    except (UnknownJob, views.JobNotFound):
        _ctx(request).records.forget(job_id)
        raise HTTPException(404, f"job {job_id!r} not found") from None


@router.post("", status_code=201, response_model=JobSummary)
def submit_job(
    spec: JobSpec,
    request: Request,
    response: Response,
    caller: Caller,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JobSummary:
    """Records a job (QUEUED) and queues it for Ray. With an `Idempotency-Key`, sending the same
    key and body again returns the same job; the same key with another body is a 409."""
    ctx = _ctx(request)
    roots = list(caller.dataset_roots) if caller.dataset_roots is not None else None
    try:
        spec = check_job_spec(spec, ctx.settings, roots)  # as it will run: data.allowed_root set
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    job_id = None
    if idempotency_key is not None:
        if not IDEMPOTENCY_KEY.match(idempotency_key):
            raise HTTPException(400, "Idempotency-Key: use 1-200 printable ASCII characters, no spaces")
        digest = hashlib.sha256(f"{caller.tenant}\0{idempotency_key}".encode()).hexdigest()
        job_id = "k" + digest[:31]  # the same key always names the same job: the store's create is atomic
    store: JobStore = ctx.store
    _within_tenant_limits(ctx, caller.tenant, spec, replay_of=job_id)
    try:
        record = store.create(
            spec, job_id=job_id, submitted_by=caller.tenant, idempotency_key=idempotency_key
        )
    except JobExists:
        if job_id is None:  # a generated id that is taken (3 random bytes per second): not a replay
            raise HTTPException(409, "the generated job id is taken; submit again") from None
        record = store.record(job_id)  # job.json is the whole job: once it exists, the replay is whole
        if record.spec != spec or record.submitted_by != caller.tenant:
            raise HTTPException(409, "Idempotency-Key was already used with a different job spec") from None
        response.headers["Idempotent-Replayed"] = "true"
    ctx.records.add(record)
    ctx.scheduler.kick()
    response.headers["Location"] = f"/jobs/{record.id}"
    with _existing(request, record.id):
        return views.summary(views.JobEntry.of(record), store.status(record.id))


def _within_tenant_limits(ctx, tenant: str, spec: JobSpec, replay_of: str | None) -> None:
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
    request: Request,
    caller: Caller,
    state: JobState | None = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=views.MAX_PAGE)] = views.DEFAULT_PAGE,
) -> JobList:
    """The caller's jobs, newest first; `state` filters, `next_cursor` pages."""
    ctx = _ctx(request)
    ctx.records.refresh()
    try:
        return views.page(ctx.records, caller.tenant, state, cursor, limit)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: str, request: Request, caller: Caller) -> JobPublic:
    ctx = _ctx(request)
    record = _record(request, job_id, caller)
    with _existing(request, record.id):
        return views.public(ctx.store, ctx.records, record)


@router.post("/{job_id}/cancel", response_model=JobSummary)
def cancel_job(job_id: str, request: Request, caller: Caller) -> JobSummary:
    """Stops the job (its Ray job, when it has one) and marks it CANCELLED. Cancelling a cancelled
    job changes nothing; a job that already SUCCEEDED or FAILED is a 409."""
    ctx = _ctx(request)
    record = _record(request, job_id, caller)
    with _existing(request, record.id):
        status = ctx.scheduler.cancel(record.id)
    if status.state is not JobState.CANCELLED:
        raise HTTPException(409, f"job {job_id} already ended: {status.state}")
    return views.summary(views.JobEntry.of(record), status)


@router.get("/{job_id}/anchors", response_model=AnchorHistory)
def anchors(
    job_id: str, request: Request, caller: Caller, since_step: Annotated[int | None, Query(ge=-1)] = None
) -> AnchorHistory:
    """Every anchor snapshot in step order; `since_step` keeps only later ones (for polling)."""
    record = _record(request, job_id, caller)
    return AnchorHistory(job_id=record.id, snapshots=_ctx(request).store.snapshots(record.id, since_step))


@router.get("/{job_id}/anchors/latest")
def latest_anchors(job_id: str, request: Request, caller: Caller):
    record = _record(request, job_id, caller)
    latest = _ctx(request).store.latest_snapshot(record.id)
    if latest is None:
        raise HTTPException(404, f"job {job_id} has no anchor snapshot yet")
    return latest


@router.get(
    "/{job_id}/anchors/plot.png", response_class=Response, responses={200: {"content": {"image/png": {}}}}
)
def anchors_plot(job_id: str, request: Request, caller: Caller) -> Response:
    """The paper's Figure 2 for this job so far: training-box density in log w-h, with each
    anchor's path from its start to the latest snapshot."""
    ctx = _ctx(request)
    record = _record(request, job_id, caller)
    snaps = ctx.store.snapshots(record.id)
    if not snaps:
        raise HTTPException(404, f"job {job_id} has no anchor snapshot yet")
    return Response(ctx.plots.draw(record.id, snaps), media_type="image/png")


@router.get("/{job_id}/metrics", response_model=MetricsHistory)
def metrics(job_id: str, request: Request, caller: Caller) -> MetricsHistory:
    record = _record(request, job_id, caller)
    return MetricsHistory(job_id=record.id, epochs=_ctx(request).store.metrics(record.id))


@router.get("/{job_id}/logs", response_model=Logs)
def logs(
    job_id: str, request: Request, caller: Caller, tail: Annotated[int | None, Query(ge=1, le=10_000)] = None
) -> Logs:
    ctx = _ctx(request)
    record = _record(request, job_id, caller)
    with _existing(request, record.id):
        text = ctx.scheduler.logs(record.id, tail or ctx.settings.log_tail_lines)
    return Logs(job_id=record.id, lines=(text or "").splitlines())


@router.get("/{job_id}/result", response_model=ResultPublic)
def result(job_id: str, request: Request, caller: Caller) -> ResultPublic:
    record = _record(request, job_id, caller)
    with _existing(request, record.id):
        found = _ctx(request).store.result(record.id)
    if found is None:
        raise HTTPException(404, f"job {job_id} has no result yet")
    return ResultPublic(
        job_id=record.id, result=found, artifacts=views.artifact_urls(record.id, found.artifacts)
    )


@router.get("/{job_id}/artifacts/{name}", response_class=Response)
def artifact(job_id: str, name: str, request: Request, caller: Caller) -> Response:
    """One of result.json's artifacts by name (anchors_json, anchors_yaml, anchors_cfg, weights,
    anchors_plot, ...), plus `dataset` and `boxes` while the job runs."""
    store = _ctx(request).store
    record = _record(request, job_id, caller)
    with _existing(request, record.id):
        found = store.result(record.id)
    keys = {"dataset": DATASET_KEY, "boxes": BOXES_KEY} | (found.artifacts if found else {})
    key = keys.get(name)
    if key is None or key.endswith("/"):
        raise HTTPException(404, f"job {job_id} has no artifact {name!r} (known: {', '.join(sorted(keys))})")
    try:
        data = store.storage.read_bytes(store.key(record.id, key))
    except NotFound:
        raise HTTPException(404, f"job {job_id}: artifact {name!r} is not written yet") from None
    media = CONTENT_TYPES.get("." + key.rsplit(".", 1)[-1], "application/octet-stream")
    filename = key.rsplit("/", 1)[-1]
    return Response(data, media_type=media, headers={"Content-Disposition": f'inline; filename="{filename}"'})
