"""What the API says about jobs, read from the job store (trainer.jobs.store).

The store is the only state: a job's record (job.json) never changes once written, so records are
cached in memory (and the cache refreshed from a listing, so jobs created by another replica
appear). A job's status is read from storage on every request. So are its snapshots, metrics and
result, except that `public()` keeps what it built for a job that ended by itself (SUCCEEDED, or
FAILED: the run, or its Ray job, is over, so nothing writes under its prefix any more), for as long
as the status it read is the one in storage (same `updated_at`: a resumed run rewrites it).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections import OrderedDict

from service.schemas import JobList, JobPublic, JobSummary, Links, Progress
from trainer.jobs.schema import JobRecord, JobStatus
from trainer.jobs.spec import JobState
from trainer.jobs.store import JobStore, UnknownJob

log = logging.getLogger(__name__)

DEFAULT_PAGE = 50
MAX_PAGE = 500
# States after which no one writes a job's documents but its status (a resume rewrites that first).
# Not CANCELLED: the service records it before stopping the Ray job, whose workers may still write.
FINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED})
# Views of ended jobs kept, least recently read dropped first: ~15 KB each for a small job, tens of KB
# with long loss curves and per-class evaluation.
CACHED_JOBS = 512


class JobNotFound(LookupError):
    """No such job for this tenant (another tenant's job is reported the same way)."""


class Records:
    """Every job's record by id, loaded once, refreshed by listing the store for new ids."""

    def __init__(self, store: JobStore):
        self.store = store
        self._by_id: dict[str, JobRecord] = {}
        self._unreadable: set[str] = set()  # logged once, then left out of listings
        self._lock = threading.Lock()

    def refresh(self) -> None:
        known = set(self._by_id) | self._unreadable
        fresh = {}
        for job_id in self.store.job_ids():
            if job_id not in known:
                try:
                    fresh[job_id] = self.store.record(job_id)
                except UnknownJob:  # a folder whose job.json is not written yet (or a stray): next time
                    continue
                except ValueError as exc:  # not a job record: one bad object must not fail every listing
                    self._unreadable.add(job_id)
                    log.error("job %s left out: its record is unreadable: %s", job_id, exc)
        with self._lock:
            self._by_id.update(fresh)

    def add(self, record: JobRecord) -> None:
        with self._lock:
            self._by_id[record.id] = record

    def get(self, job_id: str) -> JobRecord | None:
        record = self._by_id.get(job_id)
        if record is None and self.store.exists(job_id):
            record = self.store.record(job_id)
            self.add(record)
        return record

    def newest_first(self) -> list[JobRecord]:
        with self._lock:
            records = list(self._by_id.values())
        return sorted(records, key=lambda r: (r.submitted_at, r.id), reverse=True)


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


def summary(record: JobRecord, status: JobStatus) -> JobSummary:
    return JobSummary(
        id=record.id,
        name=record.spec.name,
        state=status.state,
        submitted_at=record.submitted_at,
        progress=progress(status),
        links=links(record.id),
    )


def artifact_urls(job_id: str, artifacts: dict[str, str]) -> dict[str, str]:
    """Result artifacts that are objects (not prefixes such as checkpoints/), as URLs."""
    return {
        name: f"/jobs/{job_id}/artifacts/{name}" for name, key in artifacts.items() if not key.endswith("/")
    }


class _EndedJobs:
    """`public()` of ended jobs by (storage, job id), each with the `updated_at` it was built from."""

    def __init__(self, size: int):
        self.size = size
        self._views: OrderedDict[tuple[str, str], tuple[float, JobPublic]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str], updated_at: float) -> JobPublic | None:
        with self._lock:
            found = self._views.get(key)
            if found is None or found[0] != updated_at:
                return None
            self._views.move_to_end(key)
            return found[1]

    def put(self, key: tuple[str, str], updated_at: float, view: JobPublic) -> None:
        with self._lock:
            self._views[key] = (updated_at, view)
            self._views.move_to_end(key)
            while len(self._views) > self.size:
                self._views.popitem(last=False)


_ended = _EndedJobs(CACHED_JOBS)


def public(store: JobStore, record: JobRecord) -> JobPublic:
    status = store.status(record.id)
    key = (store.storage.uri, record.id)
    if status.state in FINAL and (view := _ended.get(key, status.updated_at)) is not None:
        return view
    view = _public(store, record, status)
    if status.state in FINAL:
        _ended.put(key, status.updated_at, view)
    return view


def _public(store: JobStore, record: JobRecord, status: JobStatus) -> JobPublic:
    result = store.result(record.id) if status.state is JobState.SUCCEEDED else None
    return JobPublic(
        **summary(record, status).model_dump(),
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


def owned(records: Records, job_id: str, tenant: str) -> JobRecord:
    """The job's record if it exists and belongs to `tenant`, else JobNotFound."""
    record = records.get(job_id)
    if record is None or record.submitted_by != tenant:
        raise JobNotFound(job_id)
    return record


def page(
    store: JobStore,
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
    for record in records.newest_first():
        if record.submitted_by != tenant or (after and (record.submitted_at, record.id) >= after):
            continue
        status = store.status(record.id)
        if state is not None and status.state is not state:
            continue
        if len(items) == limit:
            more = True
            break
        items.append(summary(record, status))
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
