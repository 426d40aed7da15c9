"""Starts queued jobs on Ray, at most `max_running_jobs` at once, and keeps the store's view of
each job true to Ray's.

A background thread ticks every few seconds (and at once when a job is submitted):

1. reconcile: for every unfinished job the service handed to Ray (`launched_at` in its status),
   ask Ray. A Ray job that ended FAILED or STOPPED without its driver recording the end is marked
   FAILED with Ray's message; a job the store says RUNNING that Ray no longer knows (the cluster
   was replaced) is marked FAILED too, never left running forever. A QUEUED job marked launched
   that Ray does not know (the service died between the two) is submitted again: submitting is
   idempotent, the submission id is the job id.
2. start: the oldest QUEUED jobs not yet launched, while fewer than the limit are active.

Everything it decides is written to the store, so a restarted service picks up where it was.
"""

from __future__ import annotations

import logging
import threading
import time

from service.views import Records
from trainer.jobs.schema import JobStatus
from trainer.jobs.spec import JobState
from trainer.jobs.store import JobStore

log = logging.getLogger(__name__)

RAY_ENDED = {"FAILED", "STOPPED", "SUCCEEDED"}


class Scheduler:
    def __init__(self, store: JobStore, records: Records, launcher, store_uri: str, max_running: int,
                 interval_s: float = 2.0, job_env: dict[str, str] | None = None):  # fmt: skip
        self.store, self.records, self.launcher = store, records, launcher
        self.job_env = job_env or {}
        self.store_uri, self.max_running, self.interval_s = store_uri, max_running, interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one tick or cancel at a time
        self._thread: threading.Thread | None = None
        self._to_stop: set[str] = set()  # cancelled jobs whose Ray stop has not gone through yet
        self._ended: set[str] = set()  # jobs seen ended: an ended status is final, never read again

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
            except Exception:  # storage or Ray unreachable: keep trying, say so
                log.exception("scheduler tick failed; retrying in %.0f s", self.interval_s)
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def tick(self) -> None:
        with self._lock:
            for job_id in list(self._to_stop):
                self._stop_on_ray(job_id)
            self.records.refresh()
            unfinished = []
            for record in reversed(self.records.newest_first()):  # oldest first: submit order
                if record.id in self._ended:
                    continue
                status = self.store.status(record.id)
                if status.state.terminal:
                    self._ended.add(record.id)
                else:
                    unfinished.append((record, self._reconcile(record.id, status)))
            active = sum(1 for _, s in unfinished if not s.state.terminal and _launched(s))
            for record, status in unfinished:
                if active >= self.max_running:
                    break
                if status.state is JobState.QUEUED and not _launched(status):
                    self._launch(record.id, status)
                    active += 1

    # --- one job -------------------------------------------------------------------------------------

    def _launch(self, job_id: str, status: JobStatus) -> None:
        # Marked first, submitted second: if the service dies in between, reconcile submits again.
        marked = status.model_copy(update={"launched_at": time.time(), "updated_at": time.time()})
        self.store.write_status(job_id, marked)
        self._submit(job_id)
        log.info("job %s submitted to Ray", job_id)

    def _submit(self, job_id: str) -> None:
        """The job's driver as a Ray job: `anchor-opt run-job`. The driver claims no CPU or GPU: it
        waits on Ray Train, whose workers claim the spec's resources (resources.workers x
        cpus/gpus_per_worker); were the driver to hold them too, the workers could never start."""
        entrypoint = ["anchor-opt", "run-job", job_id, "--store", self.store_uri]
        self.launcher.submit(job_id, entrypoint, num_cpus=0, num_gpus=0, env=self.job_env)

    def _reconcile(self, job_id: str, status: JobStatus) -> JobStatus:
        if not _launched(status):
            return status
        ray = self.launcher.state(job_id)
        if ray is None:
            if status.state is JobState.QUEUED:
                self._submit(job_id)
                return status
            return self._end(
                job_id, JobState.FAILED, "Ray no longer knows this job (was the cluster replaced?)"
            )
        if ray.status not in RAY_ENDED:
            return status
        current = self.store.status(job_id)  # the driver may have recorded its end meanwhile
        if current.state.terminal:
            return current
        reason = ray.message or f"the Ray job ended {ray.status}"
        return self._end(job_id, JobState.FAILED, f"Ray job {ray.status}: {reason}")

    def _end(self, job_id: str, state: JobState, error: str) -> JobStatus:
        now = time.time()
        current = self.store.status(job_id)
        ended = current.model_copy(
            update={"state": state, "error": error, "finished_at": now, "updated_at": now}
        )
        self.store.write_status(job_id, ended)
        log.info("job %s %s: %s", job_id, state, error)
        return ended

    def cancel(self, job_id: str) -> JobStatus:
        """Marks the job CANCELLED, then stops its Ray job when it has one; an ended job is left.

        CANCELLED is written first: from then on the driver's own writes cannot change it (an ended
        status is final). A stop that fails (Ray unreachable) is retried at every tick."""
        with self._lock:
            status = self.store.status(job_id)
            if status.state.terminal:
                return status
            ended = self._end(job_id, JobState.CANCELLED, "cancelled by request")
            if _launched(status):
                self._stop_on_ray(job_id)
            return ended

    def _stop_on_ray(self, job_id: str) -> None:
        try:
            self.launcher.stop(job_id)
            self._to_stop.discard(job_id)
        except Exception as exc:  # RayUnavailable, or an error answer: try again next tick
            log.warning("could not stop Ray job %s yet (%s); retrying", job_id, exc)
            self._to_stop.add(job_id)

    def logs(self, job_id: str, tail: int) -> str | None:
        status = self.store.status(job_id)
        return self.launcher.logs(job_id, tail) if _launched(status) else None


def _launched(status: JobStatus) -> bool:
    return getattr(status, "launched_at", None) is not None
