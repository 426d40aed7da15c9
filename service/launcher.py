"""Runs training jobs on Ray through the Ray Jobs API (the job server of a Ray head's dashboard).

`RayJobs` submits, stops and inspects jobs on any job server, local or remote. `EmbeddedRay` is the
default when no cluster address is configured: RayJobs on a `LocalRayHead` (service.ray_head) that
only this service can drive, started again when it dies.

Ray is imported lazily: this module is imported when the service starts, and `import ray` costs ~0.7 s.
Every call blocks (HTTP to the job server); the service runs them in a thread.

Token authentication: the embedded head always wants the token it was started with, and EmbeddedRay
sends it. For a remote cluster (`ray_address`) the service gives `RayJobs` the token Ray itself would
use (`auth_token()`: `RAY_AUTH_TOKEN`, the file at `RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`),
read once when it starts.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

from service.ray_head import LocalRayHead
from service.ray_head_site import auth_headers, probe

logger = logging.getLogger(__name__)

__all__ = [
    "EmbeddedRay",
    "Launcher",
    "LocalRayHead",
    "RayJobState",
    "RayJobs",
    "RayUnavailable",
    "storage_env",
]


class RayUnavailable(Exception):
    """The job server cannot be reached (or refuses our credentials)."""


@dataclass(frozen=True)
class RayJobState:
    status: str  # Ray's JobStatus: PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED
    message: str | None
    start_time: float | None  # seconds since the epoch (Ray reports milliseconds)
    end_time: float | None


class Launcher(Protocol):
    """What the scheduler and the API need of a Ray cluster (RayJobs, EmbeddedRay, or a test's own):
    every call blocks, and an unreachable cluster is RayUnavailable."""

    @property
    def address(self) -> str:
        """The job server's URL."""

    @property
    def driver_address(self) -> str | None:
        """The GCS address (host:port) a job's driver must join, where the launcher knows it (the
        embedded head); None: the one Ray's job supervisor gives the driver (a cluster's own head)."""

    def submit(
        self,
        job_id: str,
        entrypoint: list[str],
        *,
        num_cpus: float = 0,
        num_gpus: float = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        """Starts `entrypoint` as Ray job `job_id`; again for the same id is a no-op."""

    def stop(self, job_id: str) -> bool:
        """Stops the Ray job; whether it was running."""

    def state(self, job_id: str) -> RayJobState | None:
        """The Ray job's state, None if Ray does not know the id."""

    def logs(self, job_id: str, tail: int = 200) -> str | None:
        """The last `tail` lines of the Ray job's driver log, None if there are none."""

    def ping(self, timeout_s: float = 5.0) -> bool:
        """Whether the job server answers (with our credentials)."""


def auth_token() -> str | None:
    """The Ray auth token as Ray itself looks it up: env, then RAY_AUTH_TOKEN_PATH, then ~/.ray/auth_token."""
    if token := os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return token
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def storage_env(s3, secrets: bool) -> dict[str, str]:
    """`trainer.contract.storage.StorageSettings` as the ANCHOR_OPT_S3_* variables a job's driver reads.

    Without `secrets` the keys are left out: a Ray job's env vars are shown by Ray's dashboard and job
    API, so on a cluster the workers get credentials from their own environment (a Kubernetes Secret,
    an IAM role), and the embedded head's processes from its private credentials file (service.ray_head).
    """
    env = {"ANCHOR_OPT_S3_REGION": s3.region, "ANCHOR_OPT_S3_PATH_STYLE": str(s3.path_style).lower()}
    env |= {"ANCHOR_OPT_S3_MAX_ATTEMPTS": str(s3.max_attempts)}
    if s3.endpoint_url:
        env["ANCHOR_OPT_S3_ENDPOINT_URL"] = s3.endpoint_url
    if secrets and s3.access_key_id and s3.secret_access_key:
        env["ANCHOR_OPT_S3_ACCESS_KEY_ID"] = s3.access_key_id
        env["ANCHOR_OPT_S3_SECRET_ACCESS_KEY"] = s3.secret_access_key.get_secret_value()
    return env


@cache
def _client_class() -> type:
    """JobSubmissionClient whose requests time out (Ray's SDK sets no timeout, so a silent host hangs)."""
    from ray.job_submission import JobSubmissionClient

    class TimedJobSubmissionClient(JobSubmissionClient):
        request_timeout_s: float = 30.0

        def _do_request(self, method, endpoint, **kwargs):
            kwargs.setdefault("timeout", self.request_timeout_s)
            return super()._do_request(method, endpoint, **kwargs)

    return TimedJobSubmissionClient


def _http_status(error: RuntimeError) -> int | None:
    """The SDK turns every non-200 answer into RuntimeError('Request failed with status code N: ...')."""
    match = re.match(r"Request failed with status code (\d+)", str(error))
    return int(match.group(1)) if match else None


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


class RayJobs:
    """Jobs on the Ray job server at `address` (http://host:8265), one Ray submission id per job id."""

    def __init__(self, address: str, token: str | None = None) -> None:
        self.address = address.rstrip("/")
        self.driver_address: str | None = None  # the cluster's head tells its drivers its own GCS
        self._token = token
        self._client_obj = None  # made on first use: the constructor already asks the server

    def _call(self, method: str, *args, **kwargs):
        """`client.method(...)`; unreachable server or rejected token -> RayUnavailable."""
        from ray.exceptions import AuthenticationError

        try:
            if self._client_obj is None:
                headers = auth_headers(self._token)
                self._client_obj = _client_class()(self.address, headers=headers)
            return getattr(self._client_obj, method)(*args, **kwargs)
        except OSError as e:  # ConnectionError from the constructor, requests' errors afterwards
            raise RayUnavailable(f"Ray job server at {self.address} unreachable: {e}") from e
        except AuthenticationError as e:
            raise RayUnavailable(f"Ray job server at {self.address} refused our token: {e}") from e

    def submit(
        self,
        job_id: str,
        entrypoint: list[str],
        *,
        num_cpus: float = 0,
        num_gpus: float = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        """Starts `entrypoint` as Ray job `job_id`; a retry after Ray already took that job is a no-op."""
        command = shlex.join(entrypoint)
        try:
            self._call(
                "submit_job",
                entrypoint=command,
                submission_id=job_id,
                runtime_env={"env_vars": dict(env)} if env else None,
                entrypoint_num_cpus=num_cpus,
                entrypoint_num_gpus=num_gpus,
            )
        except RuntimeError as e:  # a taken id answers 500 with "... already exists" in a traceback
            try:
                existing = self._call("get_job_info", job_id)
            except RuntimeError:
                raise e from None
            if existing.entrypoint != command:
                raise RuntimeError(
                    f"Ray job {job_id!r} already exists with another entrypoint: {existing.entrypoint}"
                ) from e
            logger.info("Ray already has job %s (%s): submit is a no-op", job_id, existing.status)

    def stop(self, job_id: str) -> bool:
        """True if a stop was requested; False if Ray does not know the job or it has ended."""
        try:
            return bool(self._call("stop_job", job_id))
        except RuntimeError as e:
            if _http_status(e) == 404:
                return False
            raise

    def state(self, job_id: str) -> RayJobState | None:
        """The job's state as Ray knows it; None if Ray has no job with this id."""
        try:
            info = self._call("get_job_info", job_id)
        except RuntimeError as e:
            if _http_status(e) == 404:
                return None
            raise
        return RayJobState(str(info.status), info.message, _seconds(info.start_time), _seconds(info.end_time))

    def logs(self, job_id: str, tail: int = 200) -> str | None:
        """The last `tail` lines of the job's driver log (Ray returns it whole); None if unknown."""
        try:
            text = self._call("get_job_logs", job_id)
        except RuntimeError as e:
            if _http_status(e) == 404:
                return None
            raise
        return "".join(text.splitlines(keepends=True)[-tail:]) if tail > 0 else ""

    def ping(self, timeout_s: float = 5.0) -> bool:
        """Whether the job server answers (and accepts our token): for the readiness probe."""
        return probe(self.address, self._token, timeout_s) == 200


class EmbeddedRay:
    """RayJobs on the embedded LocalRayHead, which it keeps alive: a call that finds the job server
    unreachable while the head's process group is gone (killed, the machine's OOM killer) starts the
    head again, at most once per `restart_interval_s`, and then makes the call. The scheduler already
    retries calls that fail, so it recovers without a service restart; jobs of the dead head end
    FAILED through reconcile ("Ray no longer knows this job")."""

    def __init__(self, head: LocalRayHead, restart_interval_s: float = 10.0) -> None:
        self.head = head
        self.restart_interval_s = restart_interval_s
        self._lock = threading.Lock()
        self._last_start = time.monotonic()
        self._jobs = RayJobs(head.ensure(), token=head.token)

    @property
    def address(self) -> str:
        return self._jobs.address

    @property
    def driver_address(self) -> str | None:
        return self.head.gcs_address

    def _revive(self, failed: RayJobs) -> bool:
        """Starts the head again if it is gone and the last start is old enough; whether a call may
        be retried (on a new head, or one another thread has just started)."""
        with self._lock:
            if self._jobs is not failed:
                return True
            if self.head.alive() or time.monotonic() - self._last_start < self.restart_interval_s:
                return False
            self._last_start = time.monotonic()
            logger.warning(
                "the embedded Ray head (process group %s) is gone: starting a new one in %s",
                self.head.pgid,
                self.head.temp,
            )
            try:
                self._jobs = RayJobs(self.head.ensure(), token=self.head.token)
            except RuntimeError as e:
                raise RayUnavailable(f"the embedded Ray head could not be started again: {e}") from e
            return True

    def _call(self, method: str, *args, **kwargs):
        jobs = self._jobs
        try:
            return getattr(jobs, method)(*args, **kwargs)
        except RayUnavailable:
            if not self._revive(jobs):
                raise
        return getattr(self._jobs, method)(*args, **kwargs)

    def submit(self, job_id: str, entrypoint: list[str], **kwargs) -> None:
        """RayJobs.submit."""
        self._call("submit", job_id, entrypoint, **kwargs)

    def stop(self, job_id: str) -> bool:
        """RayJobs.stop."""
        return self._call("stop", job_id)

    def state(self, job_id: str) -> RayJobState | None:
        """RayJobs.state."""
        return self._call("state", job_id)

    def logs(self, job_id: str, tail: int = 200) -> str | None:
        """RayJobs.logs."""
        return self._call("logs", job_id, tail)

    def ping(self, timeout_s: float = 5.0) -> bool:
        """Whether the job server answers (starting a dead head again first, as any call does)."""
        jobs = self._jobs
        if jobs.ping(timeout_s):
            return True
        try:
            return self._revive(jobs) and self._jobs.ping(timeout_s)
        except RayUnavailable:
            return False

    def close(self) -> bool:
        """Stops the head if this launcher started it (not one it reused); whether it did."""
        return self.head.shutdown()
