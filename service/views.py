"""What the API says about jobs, read from the job store (trainer.contract.store).

The store is the only state. A job's record (job.json) never changes once written, so `Records`
keeps a compact index of every job (id, submit time, tenant, name: what listings need), refreshed
from a listing of the store (so jobs created by another replica appear, and deleted ones go), and
caches full records (the spec can be long) in memory bounded by bytes, least recently read dropped
first. A job's status is read from storage on every request. So are its snapshots, metrics and
result, except that `public()` keeps what it built for a job that ended by itself (SUCCEEDED, or
FAILED: the run, or its Ray job, is over, so nothing writes under its prefix any more), for as long
as the status it read is the one in storage (same `updated_at`: a resumed run rewrites it), in a
cache bounded by bytes too.

One bad record costs only itself: a job whose documents are garbage is left out of listings (and
logged once), and a job deleted from the store is forgotten and answers 404.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

from service.schemas import JobList, JobPublic, JobSummary, Links, Progress
from trainer.contract.documents import JobRecord, JobStatus
from trainer.contract.spec import JobState
from trainer.contract.store import JobStore, UnknownJob

log = logging.getLogger(__name__)

DEFAULT_PAGE = 50
MAX_PAGE = 500
# States after which no one writes a job's documents but its status (a resume rewrites that first).
# Not CANCELLED: the service records it before stopping the Ray job, whose workers may still write.
FINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED})
# Defaults of the service settings record_cache_bytes and view_cache_bytes. A record is ~1-2 KB as
# JSON for a usual spec (a view of an ended job ~15 KB, tens of KB with long loss curves and
# per-class evaluation), but a spec may hold long strings up to the body limit.
RECORD_CACHE_BYTES = 16 << 20
VIEW_CACHE_BYTES = 32 << 20

_K = TypeVar("_K")
_V = TypeVar("_V")


class JobNotFound(LookupError):
    """No such job for this tenant (another tenant's job is reported the same way)."""


@dataclass(frozen=True, slots=True)
class JobEntry:
    """What the index keeps of every job: enough to list, filter by tenant and page (a few hundred
    bytes: the name is at most 100 characters, the tenant 63)."""

    id: str
    submitted_at: float
    tenant: str | None
    name: str | None
    gpus: float = 0.0  # resources.workers x gpus_per_worker: what the scheduler's tenant limits count

    @classmethod
    def of(cls, record: JobRecord) -> JobEntry:
        r = record.spec.resources
        return cls(
            record.id,
            record.submitted_at,
            record.submitted_by,
            record.spec.name,
            r.workers * r.gpus_per_worker,
        )


class SizedLRU(Generic[_K, _V]):
    """Values by key, each with its size in bytes; the least recently used go once the sizes add up
    to more than `max_bytes` (a value larger than that is not kept at all)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[_K, tuple[_V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: _K) -> _V | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)
            return found[0]

    def put(self, key: _K, value: _V, size: int) -> None:
        with self._lock:
            self._pop(key)
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.bytes -= dropped

    def pop(self, key: _K) -> None:
        with self._lock:
            self._pop(key)

    def _pop(self, key: _K) -> None:
        found = self._items.pop(key, None)
        if found is not None:
            self.bytes -= found[1]


class Records:
    """Every job's index entry, refreshed by listing the store; full records and ended jobs' views
    in caches bounded by bytes."""

    def __init__(
        self, store: JobStore, record_bytes: int = RECORD_CACHE_BYTES, view_bytes: int = VIEW_CACHE_BYTES
    ):
        self.store = store
        self._index: dict[str, JobEntry] = {}
        self._indexed_at: dict[str, float] = {}  # monotonic time each id entered the index
        self._full: SizedLRU[str, JobRecord] = SizedLRU(record_bytes)
        self.views: SizedLRU[str, tuple[float, JobPublic]] = SizedLRU(view_bytes)  # id -> (updated_at, view)
        self._unreadable: set[str] = set()  # job.json unreadable: logged once, then left out
        self._bad_status: set[str] = set()  # status.json unreadable: logged once per id
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Indexes the jobs the store lists that are not indexed yet; drops those it no longer lists."""
        began = time.monotonic()
        listed = set(self.store.job_ids())
        with self._lock:
            known = set(self._index) | self._unreadable
        for job_id in sorted(listed - known):
            try:
                self.add(self.store.record(job_id))  # one at a time: at most the cache's bytes are held
            except UnknownJob:  # a folder whose job.json is not written yet (or a stray): next time
                continue
            except ValueError as exc:  # not a job record: one bad object must not fail every listing
                with self._lock:
                    self._unreadable.add(job_id)
                log.error("job %s left out: its record is unreadable: %s", job_id, exc)
        with self._lock:
            # Gone from the store. Not those indexed after the listing began (a submit in between).
            gone = [i for i in self._index if i not in listed and self._indexed_at[i] < began]
            self._unreadable &= listed
        for job_id in gone:
            self.forget(job_id)

    def add(self, record: JobRecord) -> None:
        with self._lock:
            if record.id not in self._index:
                self._indexed_at[record.id] = time.monotonic()
            self._index[record.id] = JobEntry.of(record)
        self._full.put(record.id, record, len(record.model_dump_json()))

    def forget(self, job_id: str) -> None:
        """Drops every trace of a job that is gone from the store."""
        with self._lock:
            self._index.pop(job_id, None)
            self._indexed_at.pop(job_id, None)
            self._bad_status.discard(job_id)
        self._full.pop(job_id)
        self.views.pop(job_id)

    def get(self, job_id: str) -> JobRecord | None:
        """The job's full record (from the cache, else job.json); None if the store has no such job."""
        record = self._full.get(job_id)
        if record is not None:
            return record
        try:
            record = self.store.record(job_id)
        except UnknownJob:
            self.forget(job_id)
            return None
        self.add(record)
        return record

    def newest_first(self) -> list[JobEntry]:
        with self._lock:
            entries = list(self._index.values())
        return sorted(entries, key=lambda e: (e.submitted_at, e.id), reverse=True)

    def status(self, job_id: str) -> JobStatus | None:
        """The job's status for a listing or a count: None for a job that is gone (forgotten here)
        or whose status.json is garbage (logged once); either costs that job its line, nothing more."""
        try:
            return self.store.status(job_id)
        except UnknownJob:
            self.forget(job_id)
            return None
        except ValueError as exc:
            with self._lock:
                first = job_id not in self._bad_status
                self._bad_status.add(job_id)
            if first:
                log.error("job %s left out of listings: its status is unreadable: %s", job_id, exc)
            return None


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


def owned(records: Records, job_id: str, tenant: str) -> JobRecord:
    """The job's record if it exists and belongs to `tenant`, else JobNotFound."""
    record = records.get(job_id)
    if record is None or record.submitted_by != tenant:
        raise JobNotFound(job_id)
    return record


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
