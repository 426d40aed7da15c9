"""The service's index of every job and its caches, read from the job store (trainer.contract.store).

The store is the only state. A job's record (job.json) never changes once written, so `Records`
keeps a compact index of every job (id, submit time, tenant, name: what listings need), refreshed
from a listing of the store (so jobs created by another replica appear, and deleted ones go), and
caches full records (the spec can be long) in memory bounded by bytes, least recently read dropped
first, beside the views of ended jobs (service.views.public).

One bad record costs only itself: a job whose documents are garbage is left out of listings (and
logged once), and a job deleted from the store is forgotten and answers 404.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

from service.schemas import JobPublic
from trainer.contract.documents import JobRecord, JobStatus
from trainer.contract.store import JobStore, UnknownJob

log = logging.getLogger(__name__)

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

    def cached(self, job_id: str) -> JobRecord | None:
        """The job's full record if the cache holds it (no I/O: safe on the event loop), else None."""
        return self._full.get(job_id)

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


def owned(records: Records, job_id: str, tenant: str, record: JobRecord | None = None) -> JobRecord:
    """The job's record (`record`, else read) if it exists and belongs to `tenant`, else JobNotFound."""
    record = record or records.get(job_id)
    if record is None or record.submitted_by != tenant:
        raise JobNotFound(job_id)
    return record
