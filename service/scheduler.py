"""Starts queued jobs on Ray, at most `max_running_jobs` at once, and keeps the store's view of
each job true to Ray's.

A background thread ticks every few seconds (and at once when a job is submitted):

1. reconcile: for every unfinished job the service handed to Ray (`launched_at` in its status),
   ask Ray. A Ray job that ended FAILED or STOPPED without its driver recording the end is marked
   FAILED with the cause Ray reports (the driver's error line, not its whole log); a job the store
   says RUNNING that Ray no longer knows (the cluster was replaced) is marked FAILED too, never left
   running forever. A QUEUED job marked launched that Ray does not know (the service died between
   the two) is submitted again: submitting is idempotent under the submission id recorded with the
   mark.
2. start: QUEUED jobs not yet launched, while fewer than `max_running_jobs` are active, taking
   tenants in turn and each within its own limits (service.fairness); every job left waiting gets
   its reason in its status (`waiting`), written when it changes.

Each job is handled on its own: one whose documents cannot be read (garbage, or gone) is logged
and skipped, never a reason to stop scheduling the others; only Ray being unreachable ends a tick
early (it is the same cause for every job). Every status change is a compare-and-swap through
`JobStore.update_status`, so a cancel, the driver's own writes and this loop never undo each
other and an ended state is final. Everything it decides is written to the store, so a restarted
service picks up where it was.

Ray submission ids are `<job id>-<random>`, made at each launch and recorded in the status: a job id
is derived from a tenant and an idempotency key, so another store on the same Ray cluster (or a new
store after the old one was wiped) can hold the same job id; its Ray job must not be this one.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable

from service.fairness import Job, TenantLimits, plan
from service.launcher import RayUnavailable
from service.records import Records
from trainer.contract.documents import JobStatus
from trainer.contract.spec import JobState
from trainer.contract.store import JobStore, UnknownJob

log = logging.getLogger(__name__)

RAY_ENDED = {"FAILED", "STOPPED", "SUCCEEDED"}
MAX_REASON_CHARS = 300  # what a status says of Ray's reason; Ray's job logs keep all of it
# The line `anchor-opt run-job` ends with when it fails for a reason it can name (trainer.cli main).
_DRIVER_ERROR = re.compile(r"^(?:error: |job \S+ (?:FAILED|CANCELLED): )(?P<cause>.+)$")


def _no_limits(tenant: str) -> TenantLimits | None:
    return None


class Scheduler:
    def __init__(self, store: JobStore, records: Records, launcher, store_uri: str, max_running: int,
                 interval_s: float = 2.0, job_env: dict[str, str] | None = None,
                 limits: Callable[[str], TenantLimits | None] = _no_limits,
                 retention_s: float | None = None):  # fmt: skip
        self.store, self.records, self.launcher = store, records, launcher
        self.job_env = job_env or {}
        self.limits = limits  # a tenant's own limits (service.fairness)
        self._last_tenant: str | None = None  # served last: the next free slot goes to the one after
        self.store_uri, self.max_running, self.interval_s = store_uri, max_running, interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one tick or cancel at a time
        self._thread: threading.Thread | None = None
        self._to_stop: set[str] = set()  # Ray submission ids of cancelled jobs not stopped yet
        self._ended: set[str] = set()  # jobs seen ended: an ended status is final, never read again
        self.retention_s = retention_s  # ended jobs are deleted this long after they ended (None: kept)
        self._ended_at: dict[str, float] = {}  # job id -> when it ended, for the retention
        self._trouble: dict[str, str] = {}  # job id -> the problem last logged for it (logged once)

    # --- the loop ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="anchor-opt-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=30)

    def kick(self) -> None:
        """Tick now (a job was submitted)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # storage listing or Ray unreachable: keep trying, say so
                log.exception("scheduler tick failed; retrying in %.0f s", self.interval_s)
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def tick(self) -> None:
        with self._lock:
            for submission_id in list(self._to_stop):
                self._stop_on_ray(submission_id)
            self.records.refresh()
            unfinished = []
            for entry in reversed(self.records.newest_first()):  # oldest first: submit order
                if entry.id in self._ended:
                    continue
                status = self._guarded(entry.id, "reconcile", self._reconcile_one, entry.id)
                if status is None:
                    continue
                if status.state.terminal:
                    self._ended.add(entry.id)
                    self._ended_at[entry.id] = status.finished_at or status.updated_at
                else:
                    unfinished.append((Job(entry.id, entry.tenant or "", entry.gpus), status))
            active = [job for job, status in unfinished if _launched(status)]
            queued = [(job, s) for job, s in unfinished if s.state is JobState.QUEUED and not _launched(s)]
            decided = plan(
                [job for job, _ in queued], active, self.max_running, self.limits, self._last_tenant
            )
            self._last_tenant = decided.last_tenant
            for job_id in decided.start:
                self._guarded(job_id, "launch", self._launch, job_id)
            for job, status in queued:
                reason = decided.waiting.get(job.id)
                if reason is not None and reason != status.waiting:
                    self._guarded(job.id, "note why it waits", self._note_waiting, job.id, reason)
            self._expire_ended()

    def _expire_ended(self) -> None:
        """Deletes the jobs that ended more than `retention_s` ago (settings.job_retention_days)."""
        if self.retention_s is None:
            return
        cutoff = time.time() - self.retention_s
        for job_id, ended_at in list(self._ended_at.items()):
            if ended_at < cutoff:
                self._ended_at.pop(job_id)  # once: a job deleted meanwhile is not tried again
                self._guarded(job_id, "expire", self._delete, job_id)

    def _delete(self, job_id: str) -> None:
        self.store.delete(job_id)
        self.records.forget(job_id)
        self._ended.discard(job_id)
        log.info("job %s deleted: ended over %.0f days ago", job_id, (self.retention_s or 0) / 86400)

    def queued(self, tenant: str) -> int:
        """How many of `tenant`'s jobs wait, not yet handed to Ray (for its max_queued_jobs)."""
        count = 0
        for entry in self.records.newest_first():
            if entry.tenant == tenant and entry.id not in self._ended:
                status = self.records.status(entry.id)
                count += status is not None and status.state is JobState.QUEUED and not _launched(status)
        return count

    def _guarded(self, job_id: str, what: str, step, *args) -> JobStatus | None:
        """`step(*args)` for one job; a failure of that job alone is logged (once until it changes)
        and answers None. A job that no longer exists is forgotten. Ray unreachable is raised: the
        same for every job, so the tick ends and the loop says so."""
        try:
            result = step(*args)
        except RayUnavailable:
            raise
        except UnknownJob:
            log.info("job %s is gone from the store; forgetting it", job_id)
            self.records.forget(job_id)
            self._trouble.pop(job_id, None)
            return None
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
            if self._trouble.get(job_id) != problem:
                log.error("job %s: %s failed, skipping it (other jobs go on): %s", job_id, what, problem)
                self._trouble[job_id] = problem
            return None
        if self._trouble.pop(job_id, None) is not None:
            log.info("job %s: %s works again", job_id, what)
        return result

    # --- one job -------------------------------------------------------------------------------------

    def _reconcile_one(self, job_id: str) -> JobStatus:
        status = self.store.status(job_id)
        return status if status.state.terminal else self._reconcile(job_id, status)

    def _launch(self, job_id: str) -> JobStatus:
        """Marks the job launched under a new submission id, then submits it under the id now
        recorded. Marked first, submitted second: if the service dies in between, reconcile
        submits again, under the same id."""

        def mark(status: JobStatus) -> dict | None:
            if status.state is not JobState.QUEUED or _launched(status):
                return None  # cancelled, or launched by another replica, meanwhile
            submission = f"{job_id}-{secrets.token_hex(4)}"
            return {"launched_at": time.time(), "ray_submission_id": submission, "waiting": None}

        marked = self.store.update_status(job_id, mark)
        if marked.state is JobState.QUEUED and _launched(marked):
            self._submit(job_id, marked)
            log.info("job %s submitted to Ray as %s", job_id, submission_id(job_id, marked))
        return marked

    def _note_waiting(self, job_id: str, reason: str) -> JobStatus:
        """Records why a queued job waits, unless it has started or ended meanwhile."""

        def note(status: JobStatus) -> dict | None:
            still = status.state is JobState.QUEUED and not _launched(status) and status.waiting != reason
            return {"waiting": reason} if still else None

        return self.store.update_status(job_id, note)

    def _submit(self, job_id: str, status: JobStatus) -> None:
        """The job's driver as a Ray job: `anchor-opt run-job`. The driver claims no CPU or GPU: it
        waits on Ray Train, whose workers claim the spec's resources (resources.workers x
        cpus/gpus_per_worker); were the driver to hold them too, the workers could never start.
        Where the launcher knows its cluster's GCS (the embedded head), the driver is pinned to it:
        Ray's supervisor would tell it the latest Ray started in the head's temp dir (service.ray_head)."""
        entrypoint = ["anchor-opt", "run-job", job_id, "--store", self.store_uri]
        if gcs := self.launcher.driver_address:
            entrypoint += ["--ray-address", gcs]
        self.launcher.submit(
            submission_id(job_id, status), entrypoint, num_cpus=0, num_gpus=0, env=self.job_env
        )

    def _reconcile(self, job_id: str, status: JobStatus) -> JobStatus:
        if not _launched(status):
            return status
        ray = self.launcher.state(submission_id(job_id, status))
        if ray is None:
            if status.state is JobState.QUEUED:
                self._submit(job_id, status)
                return status
            return self._end(
                job_id, JobState.FAILED, "Ray no longer knows this job (was the cluster replaced?)"
            )
        if ray.status not in RAY_ENDED:
            return status
        # Unless the driver recorded its end meanwhile: then that end stays (an ended state is final).
        reason = ray_reason(ray.status, ray.message)
        return self._end(job_id, JobState.FAILED, f"Ray job {ray.status}: {reason}")

    def _end(self, job_id: str, state: JobState, error: str) -> JobStatus:
        """Ends the job `state` unless it has ended already; returns the status now stored."""
        change = {"state": state, "error": error, "finished_at": time.time()}
        ended = self.store.update_status(job_id, change)
        if ended.state is state and ended.error == error:
            log.info("job %s %s: %s", job_id, state, error)
        return ended

    def cancel(self, job_id: str) -> JobStatus:
        """Marks the job CANCELLED, then stops its Ray job when it has one; returns the status now
        stored, which is the job's own end (SUCCEEDED, FAILED) when it had ended before the cancel.

        CANCELLED is written first: from then on the driver's own writes cannot change it (an ended
        status is final, and every write is a compare-and-swap, so none can be made on a status read
        before the cancel). A stop that fails (Ray unreachable) is retried at every tick."""
        with self._lock:
            ended = self._end(job_id, JobState.CANCELLED, "cancelled by request")
            if ended.state is JobState.CANCELLED and _launched(ended):
                self._stop_on_ray(submission_id(job_id, ended))
            return ended

    def _stop_on_ray(self, submission: str) -> None:
        try:
            self.launcher.stop(submission)
            self._to_stop.discard(submission)
        except Exception as exc:  # RayUnavailable, or an error answer: try again next tick
            log.warning("could not stop Ray job %s yet (%s); retrying", submission, exc)
            self._to_stop.add(submission)

    def logs(self, job_id: str, tail: int) -> str | None:
        status = self.store.status(job_id)
        return self.launcher.logs(submission_id(job_id, status), tail) if _launched(status) else None


def submission_id(job_id: str, status: JobStatus) -> str:
    """The Ray job of this launch: the recorded one (a status written before ids were recorded
    was submitted as the job id)."""
    return status.ray_submission_id or job_id


def ray_reason(ray_status: str, message: str | None) -> str:
    """Ray's reason for a job's end, cut down to its cause. When the driver exits non-zero, Ray's
    message is the last 20,000 characters of the driver's log; the cause is the driver's own error
    line (trainer.cli prints one for a store it cannot write, a job that failed), else the log's
    last line (a traceback's exception)."""
    text = (message or "").strip()
    head, _, logs = text.partition("\n")
    if "last available logs" in head:
        lines = [line.strip() for line in logs.splitlines() if line.strip()]
        causes = [m["cause"] for line in lines if (m := _DRIVER_ERROR.match(line))]
        code = re.search(r"exit code (-?\d+)", head)
        cause = causes[-1] if causes else (lines[-1] if lines else "no log")
        text = f"the driver exited with code {code[1] if code else '?'}: {cause}"
    text = text or f"the Ray job ended {ray_status}"
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def _launched(status: JobStatus) -> bool:
    return status.launched_at is not None
