"""A job's objects in storage: `jobs/<id>/...` in a local folder or an S3 bucket (trainer.contract.storage).

    store = JobStore(open_storage("s3://anchor-opt", settings))
    record = store.create(spec, submitted_by="team-a")      # job.json alone (conditional create)
    record, replayed = store.submit(spec, "team-a", idempotency_key="nightly-42")  # at most once
    store.status(record.id)                                   # QUEUED at submitted_at until written
    store.update_status(record.id, {"state": JobState.CANCELLED, "error": "..."})  # compare-and-swap
    store.snapshots(record.id, since_step=100)                # what a poller has not seen yet

One writer per key (DESIGN.md): the service creates job.json, once; the trainer's rank 0 writes
snapshots, metrics and result while it runs. status.json has several writers (the trainer's
progress and end, the service's launch, cancel and the end of a job it finds dead), and every one
goes through trainer.contract.transitions: a compare-and-swap, so none is lost and an ended state is
final. Creating a job writes one object, so a job exists whole or not at all: until its first
status write, a job is QUEUED since it was submitted. Every write replaces a whole object, so a
reader sees the old or the new document, never half of one. The keys under a job's prefix are
trainer.contract.layout's run keys, so a local run folder and a job prefix have the same layout.

Idempotent submits: `submit(spec, tenant, idempotency_key=K)` names the job after (tenant, K), so the
same key always names the same job and the store's conditional create decides which request made it;
sending it again returns that job, with another spec it is IdempotencyConflict.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import TypeVar

from pydantic import BaseModel

from trainer.contract.documents import AnchorSnapshot, EpochMetrics, JobRecord, JobResult, JobStatus
from trainer.contract.layout import (
    JOB_KEY,
    JOBS_PREFIX,
    METRICS_PREFIX,
    RESULT_KEY,
    SNAPSHOT_PREFIX,
    STATUS_KEY,
    job_key,
    number_of,
)
from trainer.contract.spec import JobSpec, JobState
from trainer.contract.storage import AlreadyExists, NotFound, Storage
from trainer.contract.transitions import Change, transition

# Lower-case letters, digits and dashes: safe in S3 keys, URLs and Ray submission ids.
JOB_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces

_Doc = TypeVar("_Doc", bound=BaseModel)


class JobExists(AlreadyExists):
    """A job with this id was created before; its objects are left as they were."""


class UnknownJob(NotFound):
    """No job with this id in the store (`job_id` says which)."""

    def __init__(self, message: str, uri: str = "", job_id: str | None = None):
        super().__init__(message, uri)
        self.job_id = job_id


class IdempotencyConflict(ValueError):
    """The idempotency key was used before, by another spec (or tenant)."""


def idempotent_job_id(tenant: str | None, idempotency_key: str) -> str:
    """The job id of `idempotency_key` for `tenant`: the same pair always names the same job.
    ValueError naming the key when it is not 1-200 printable ASCII characters without spaces."""
    if not IDEMPOTENCY_KEY.match(idempotency_key):
        raise ValueError("Idempotency-Key: use 1-200 printable ASCII characters, no spaces")
    digest = hashlib.sha256(f"{tenant}\0{idempotency_key}".encode()).hexdigest()  # as ids always were
    return "k" + digest[:31]


def new_job_id() -> str:
    """Sortable by submit time, unique in practice: `20261124-093012-3f9a1c`."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def check_job_id(job_id: str) -> str:
    if not JOB_ID.match(job_id):
        raise ValueError(f"job id {job_id!r}: use 3-63 lower-case letters, digits and dashes")
    return job_id


class JobStore:
    """Reads and writes jobs under `jobs/<id>/` of one storage root."""

    def __init__(self, storage: Storage):
        self.storage = storage

    def key(self, job_id: str, name: str = "") -> str:
        """The key of `name` (e.g. "status.json", "anchors/00000100.json") under the job's prefix."""
        return job_key(check_job_id(job_id), name)

    def run_uri(self, job_id: str) -> str:
        """The job's prefix as a storage URI (`s3://bucket/root/jobs/<id>`): a training run's root."""
        return self.storage.uri_for(self.key(job_id)).rstrip("/")

    # --- creating and listing -----------------------------------------------------------------------

    def create(
        self,
        spec: JobSpec,
        *,
        job_id: str | None = None,
        submitted_by: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobRecord:
        """Records a new job: its job.json, created only if absent, and nothing else (the job is
        QUEUED until its status is first written), so a failed submit leaves no half of a job.

        JobExists if the id is taken: the existing job is not touched.
        """
        record = JobRecord(
            id=check_job_id(job_id or new_job_id()),
            spec=spec,
            submitted_at=time.time(),
            submitted_by=submitted_by,
            idempotency_key=idempotency_key,
        )
        key, data = self.key(record.id, JOB_KEY), _dump(record)
        try:
            self.storage.write_bytes(key, data, if_absent=True)
        except AlreadyExists:
            # A retried request whose first try did land (its answer was lost) finds its own record.
            try:
                if self.storage.read_bytes(key) == data:
                    return record
            except NotFound:
                pass
            raise JobExists(
                f"job {record.id} already exists", self.storage.uri_for(self.key(record.id))
            ) from None
        return record

    def submit(
        self, spec: JobSpec, submitted_by: str | None, *, idempotency_key: str | None = None
    ) -> tuple[JobRecord, bool]:
        """Creates a job; with `idempotency_key`, at most once per (tenant, key): a submit that finds
        its key's job returns it (and True: a replay) if the spec and tenant are the same, else
        IdempotencyConflict. Without a key, JobExists when the generated id is taken."""
        if idempotency_key is None:
            return self.create(spec, submitted_by=submitted_by), False
        job_id = idempotent_job_id(submitted_by, idempotency_key)
        try:
            return self.create(
                spec, job_id=job_id, submitted_by=submitted_by, idempotency_key=idempotency_key
            ), False
        except JobExists:
            record = self.record(job_id)  # job.json is the whole job: once it exists, the replay is whole
            if record.spec != spec or record.submitted_by != submitted_by:
                raise IdempotencyConflict(
                    "Idempotency-Key was already used with a different job spec"
                ) from None
            return record, True

    def job_ids(self) -> list[str]:
        """The id of every job folder, oldest first for ids from `new_job_id`.

        One listing of the folders under `jobs/`, not of every object in them. A folder can be listed
        before its job.json is written, or after it was deleted (or a stray one without it): `record()`
        then raises UnknownJob.
        """
        return [name for name in self.storage.folders(JOBS_PREFIX) if JOB_ID.match(name)]

    def delete(self, job_id: str) -> int:
        """Removes the job: job.json first (from then on it is an UnknownJob everywhere), then every
        other object under its prefix. Returns how many objects went. An interrupted delete leaves
        objects without job.json, which nothing reads; a second delete removes them."""
        prefix = self.key(job_id)
        self.storage.delete(self.key(job_id, JOB_KEY))
        keys = [info.key for info in self.storage.list(prefix)]
        for key in keys:
            self.storage.delete(key)
        return len(keys) + 1

    def exists(self, job_id: str) -> bool:
        return self.storage.exists(self.key(job_id, JOB_KEY))

    # --- documents ----------------------------------------------------------------------------------

    def record(self, job_id: str) -> JobRecord:
        return self._read(job_id, JOB_KEY, JobRecord)

    def status(self, job_id: str) -> JobStatus:
        """The job's status.json, or QUEUED at its submit time while none is written. UnknownJob if
        there is no such job (read from job.json, not from a record the caller holds: a job deleted
        meanwhile must not look QUEUED)."""
        try:
            return self._parse(self.key(job_id, STATUS_KEY), JobStatus)
        except NotFound:
            return self._queued(job_id)

    def update_status(self, job_id: str, change: Change, *, reopen: bool = False) -> JobStatus:
        """Applies `change` (fields, or a function of the status read) to the job's status as one
        compare-and-swap (trainer.contract.transitions); returns the status now stored, which is the
        ended one, unchanged, when the job had ended (unless `reopen`). UnknownJob if there is no
        such job (nothing is written for it)."""
        key = self.key(job_id, STATUS_KEY)
        return transition(self.storage, key, change, reopen=reopen, initial=lambda: self._queued(job_id))

    def write_status(self, job_id: str, status: JobStatus) -> None:
        """Overwrites status.json with `status`, unconditionally: for tools and tests that set up a
        state by hand. The service and the trainer never call it (they use `update_status`)."""
        self.storage.write_bytes(self.key(job_id, STATUS_KEY), _dump(status))

    def snapshots(self, job_id: str, since_step: int | None = None) -> list[AnchorSnapshot]:
        """Anchor snapshots in step order; with `since_step`, only those after it (for polling)."""
        keys = [o.key for o in self.storage.list(self.key(job_id, SNAPSHOT_PREFIX))]
        if since_step is not None:
            keys = [k for k in keys if number_of(k) > since_step]
        return [self._parse(k, AnchorSnapshot) for k in keys]

    def latest_snapshot(self, job_id: str) -> AnchorSnapshot | None:
        keys = [o.key for o in self.storage.list(self.key(job_id, SNAPSHOT_PREFIX))]
        return self._parse(keys[-1], AnchorSnapshot) if keys else None

    def metrics(self, job_id: str) -> list[EpochMetrics]:
        keys = [o.key for o in self.storage.list(self.key(job_id, METRICS_PREFIX))]
        return [self._parse(k, EpochMetrics) for k in keys]

    def latest_metrics(self, job_id: str) -> EpochMetrics | None:
        """The last epoch's metrics, the only one parsed; None before the first epoch ends."""
        keys = [o.key for o in self.storage.list(self.key(job_id, METRICS_PREFIX))]
        return self._parse(keys[-1], EpochMetrics) if keys else None

    def result(self, job_id: str) -> JobResult | None:
        """The result of a finished job; None while it runs."""
        try:
            return self._read(job_id, RESULT_KEY, JobResult)
        except UnknownJob:
            if not self.exists(job_id):
                raise
            return None

    # --- helpers ------------------------------------------------------------------------------------

    def _queued(self, job_id: str) -> JobStatus:
        """What a job whose status.json is not written yet is: QUEUED since it was submitted."""
        record = self.record(job_id)  # UnknownJob if job.json is gone too
        return JobStatus(state=JobState.QUEUED, updated_at=record.submitted_at)

    def _read(self, job_id: str, name: str, model: type[_Doc]) -> _Doc:
        key = self.key(job_id, name)
        try:
            return self._parse(key, model)
        except NotFound:
            raise UnknownJob(f"no {name} for job {job_id}", self.storage.uri_for(key), job_id) from None

    def _parse(self, key: str, model: type[_Doc]) -> _Doc:
        return model.model_validate_json(self.storage.read_bytes(key))


def _dump(doc: BaseModel) -> bytes:
    return doc.model_dump_json(indent=1).encode()
