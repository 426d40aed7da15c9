"""Runs training jobs on Ray through the Ray Jobs API (the job server of a Ray head's dashboard).

`LocalRayHead` is the embedded default when no cluster address is configured: a Ray head started as a
separate, detached process (its own session), so that restarting the service leaves running jobs
alone. `RayJobs` submits, stops and inspects jobs on any job server, local or remote.

Ray is imported lazily: this module is imported when the service starts, and `import ray` costs ~0.7 s.
Every call blocks (HTTP to the job server); the service runs them in a thread.

Token authentication: a Ray 2.60 head enables it by itself when a token already exists (`RAY_AUTH_TOKEN`,
the file at `RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`, written by the first local `ray.init`), and
stays open otherwise. `RayJobs` sends that token whenever one exists, so it talks to either kind.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path

logger = logging.getLogger(__name__)

_STATE_FILE = "anchor-opt-head.json"  # in the head's temp dir: the process group to stop it by


class RayUnavailable(Exception):
    """The job server cannot be reached (or refuses our credentials)."""


@dataclass(frozen=True)
class RayJobState:
    status: str  # Ray's JobStatus: PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED
    message: str | None
    start_time: float | None  # seconds since the epoch (Ray reports milliseconds)
    end_time: float | None


def auth_token() -> str | None:
    """The Ray auth token as Ray itself looks it up: env, then RAY_AUTH_TOKEN_PATH, then ~/.ray/auth_token."""
    if token := os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return token
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def probe(address: str, token: str | None = None, timeout_s: float = 5.0) -> int | None:
    """HTTP status of GET <address>/api/version (200: a Ray job server we may use), None if no answer."""
    req = urllib.request.Request(address.rstrip("/") + "/api/version", headers=_auth_headers(token))
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status if "ray_version" in json.loads(resp.read() or b"{}") else None
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):  # refused, timed out, reset; or not JSON: not a Ray job server
        return None


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _temp_dir(temp_dir: str | None) -> Path:
    return Path(temp_dir or os.path.join(os.environ.get("RAY_TMPDIR", "/tmp"), "ray"))  # Ray's default


def _group_gone(pgid: int, wait_s: float) -> bool:
    """Waits up to `wait_s` for process group `pgid` to be empty; whether it is."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


class LocalRayHead:
    """A single-node Ray head with its dashboard on 127.0.0.1, started with `ray start --head`."""

    def __init__(self) -> None:
        self.started = False  # whether the last ensure() started a head (False: one already answered)

    def ensure(
        self,
        temp_dir: str | None = None,
        num_cpus: int | None = None,
        dashboard_port: int = 8265,
        timeout_s: float = 90.0,
        env: dict[str, str] | None = None,
    ) -> str:
        """Job server URL of a head at `dashboard_port`, reusing one that answers, else starting one.

        `temp_dir` must be short (Ray puts Unix sockets under it); default RAY_TMPDIR or /tmp, + /ray.
        The head runs in its own session: it outlives this process and ignores its terminal's signals.
        `env` is added to the head's environment, which every job it runs inherits.
        """
        url = f"http://127.0.0.1:{dashboard_port}"
        self.started = False
        if probe(url, auth_token()) is not None:
            return url
        temp = _temp_dir(temp_dir)
        temp.mkdir(parents=True, exist_ok=True)
        ray = Path(sys.executable).with_name("ray")
        cmd = [str(ray), "start", "--head", "--include-dashboard=true", "--dashboard-host", "127.0.0.1"]
        cmd += ["--dashboard-port", str(dashboard_port), "--temp-dir", str(temp), "--disable-usage-stats"]
        # Free ports, not the fixed defaults (GCS 6379, agent 52365, Ray Client 10001): with those a
        # second head on the machine (another checkout, a test run) fails to start.
        cmd += ["--port", "0", "--dashboard-agent-listen-port", "0", "--ray-client-server-port", _free_port()]
        if num_cpus is not None:
            cmd += ["--num-cpus", str(num_cpus)]
        env = {**os.environ, **(env or {}), "RAY_USAGE_STATS_ENABLED": "0"}
        # Jobs run `anchor-opt ...`: put this environment's scripts first on their PATH.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        log_path = temp / "ray-start.log"
        deadline = time.monotonic() + timeout_s
        logger.info("starting a local Ray head: %s", shlex.join(cmd))
        with open(log_path, "w") as log:  # a file, not a pipe: the daemons must not hold our pipe open
            proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        (temp / _STATE_FILE).write_text(json.dumps({"pgid": proc.pid, "url": url}))
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            rc = None
        while rc == 0 and time.monotonic() < deadline:
            if probe(url, auth_token()) == 200:
                self.started = True
                return url
            time.sleep(0.25)
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(
            f"no Ray job server answered at {url} (waited up to {timeout_s:.0f} s); ran `{shlex.join(cmd)}` "
            f"(exit status {rc}), its output ends with:\n{tail}"
        )

    @staticmethod
    def stop(temp_dir: str | None = None, grace_s: float = 10.0) -> bool:
        """Stops the head that ensure() started in `temp_dir` (not `ray stop`: that kills every Ray on
        the machine). SIGTERM to its process group, SIGKILL after `grace_s` (the GCS server can hang on
        SIGTERM). Job drivers die with their supervisor. False if no head of ours was recorded there."""
        state = _temp_dir(temp_dir) / _STATE_FILE
        try:
            pgid = int(json.loads(state.read_text())["pgid"])
        except (OSError, ValueError, KeyError):
            return False
        try:
            os.killpg(pgid, signal.SIGTERM)
            if not _group_gone(pgid, grace_s):
                os.killpg(pgid, signal.SIGKILL)
                _group_gone(pgid, 5.0)
        except ProcessLookupError:
            pass
        state.unlink(missing_ok=True)
        return True


def storage_env(s3, secrets: bool) -> dict[str, str]:
    """`trainer.storage.StorageSettings` as the ANCHOR_OPT_S3_* variables a job's driver reads.

    Without `secrets` the keys are left out: a Ray job's env vars are shown by Ray's dashboard and job
    API, so on a cluster the workers get credentials from their own environment (a Kubernetes Secret,
    an IAM role). The embedded head is started with them (`secrets=True`): its environment is private.
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
        self._token = token
        self._client_obj = None  # made on first use: the constructor already asks the server

    def _call(self, method: str, *args, **kwargs):
        """`client.method(...)`; unreachable server or rejected token -> RayUnavailable."""
        from ray.exceptions import AuthenticationError

        try:
            if self._client_obj is None:
                headers = _auth_headers(self._token or auth_token())
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
        return probe(self.address, self._token or auth_token(), timeout_s) == 200
