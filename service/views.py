"""What the API says about jobs, read from the job store (trainer.contract.store) through the
record index and caches (service.records).

A job's status is read from storage on every request. So are its snapshots, metrics and result,
except that `public()` keeps what it built for a job that ended by itself (SUCCEEDED, or FAILED: the
run, or its Ray job, is over, so nothing writes under its prefix any more), for as long as the status
it read is the one in storage (same `updated_at`: a resumed run rewrites it), in a cache bounded by
bytes (Records.views).
"""

from __future__ import annotations

import base64
import json

from service.records import JobEntry, JobNotFound, Records
from service.schemas import JobList, JobPublic, JobSummary, Links, Progress
from trainer.contract.documents import JobRecord, JobStatus
from trainer.contract.spec import JobState
from trainer.contract.store import JobStore, UnknownJob

DEFAULT_PAGE = 50
MAX_PAGE = 500
# States after which no one writes a job's documents but its status (a resume rewrites that first).
# Not CANCELLED: the service records it before stopping the Ray job, whose workers may still write.
FINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED})


def links(job_id: str) -> Links:
    base = f"/jobs/{job_id}"
    return Links(
        self=base,
        anchors=f"{base}/anchors",
        anchors_latest=f"{base}/anchors/latest",
        anchors_plot=f"{base}/anchors/plot.png",
        metrics=f"{base}/metrics",
        logs=f"{base}/logs",
        result=f"{base}/result",
        cancel=f"{base}/cancel",
    )


def progress(status: JobStatus) -> Progress:
    return Progress.model_validate(status.model_dump(include=set(Progress.model_fields)))


def summary(job: JobEntry, status: JobStatus) -> JobSummary:
    return JobSummary(
        id=job.id,
        name=job.name,
        state=status.state,
        submitted_at=job.submitted_at,
        progress=progress(status),
        links=links(job.id),
    )


def artifact_urls(job_id: str, artifacts: dict[str, str]) -> dict[str, str]:
    """Result artifacts that are objects (not prefixes such as checkpoints/), as URLs."""
    return {
        name: f"/jobs/{job_id}/artifacts/{name}" for name, key in artifacts.items() if not key.endswith("/")
    }


def public(store: JobStore, records: Records, record: JobRecord) -> JobPublic:
    """GET /jobs/{id}. JobNotFound if the job is gone from the store (it is forgotten)."""
    try:
        status = store.status(record.id)
    except UnknownJob:
        records.forget(record.id)
        raise JobNotFound(record.id) from None
    if status.state in FINAL and (found := records.views.get(record.id)) and found[0] == status.updated_at:
        return found[1]
    view = _public(store, record, status)
    if status.state in FINAL:
        records.views.put(record.id, (status.updated_at, view), len(view.model_dump_json()))
    return view


def _public(store: JobStore, record: JobRecord, status: JobStatus) -> JobPublic:
    result = store.result(record.id) if status.state is JobState.SUCCEEDED else None
    return JobPublic(
        **summary(JobEntry.of(record), status).model_dump(),
        spec=record.spec,
        submitted_by=record.submitted_by,
        error=status.error,
        started_at=status.started_at,
        finished_at=status.finished_at,
        updated_at=status.updated_at,
        latest_anchors=store.latest_snapshot(record.id),
        latest_metrics=store.latest_metrics(record.id),
        artifacts=artifact_urls(record.id, result.artifacts) if result else {},
    )


def page(
    records: Records,
    tenant: str,
    state: JobState | None,
    cursor: str | None,
    limit: int,
) -> JobList:
    """The tenant's jobs, newest first, optionally in one state, `limit` per page after `cursor`."""
    after = decode_cursor(cursor) if cursor else None
    items: list[JobSummary] = []
    more = False
    for entry in records.newest_first():
        if entry.tenant != tenant or (after and (entry.submitted_at, entry.id) >= after):
            continue
        status = records.status(entry.id)
        if status is None or (state is not None and status.state is not state):
            continue
        if len(items) == limit:
            more = True
            break
        items.append(summary(entry, status))
    last = items[-1] if items and more else None
    return JobList(items=items, next_cursor=encode_cursor(last.submitted_at, last.id) if last else None)


def encode_cursor(submitted_at: float, job_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([submitted_at, job_id]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    """ValueError naming the parameter when the cursor is not one this API handed out."""
    try:
        at, job_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return float(at), str(job_id)
    except Exception:
        raise ValueError("cursor: not a cursor from a previous page's next_cursor") from None
