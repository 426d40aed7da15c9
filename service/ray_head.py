"""The embedded Ray head: a single-node Ray started beside the service, that only the service can drive.

Ray's Jobs API runs any command for whoever it accepts, so the head is locked to this service:

- Token authentication is always on (`RAY_AUTH_MODE=token`), with a token generated for each start and
  kept in a file only this user can read, in a private folder of the head's temp dir (Ray makes the
  temp dir itself writable by everyone). Ray's processes and the job drivers find it through
  `RAY_AUTH_TOKEN_PATH`; it is never in an environment, a command line or a log.
- Every port is on 127.0.0.1. On Linux, Ray 2.60 turns a loopback `--node-ip-address` into the
  machine's routable address (`services.resolve_ip_for_localhost`) and binds the GCS, the raylet and
  the client server to it or to every interface, unless `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, its
  single-machine mode (which also refuses `ray start --address` from another node).
- Its environment, which every job inherits, holds no secret: it is a scrubbed copy of the service's.
  Static S3 keys go to a private AWS shared-credentials file (`AWS_SHARED_CREDENTIALS_FILE`), which
  boto3 and pyarrow read through their default chains.
- `ensure()` reuses only a head that this service started (recorded in its private folder, its
  process group alive, at the same URL) and that accepts the recorded token; anything else on the
  port is an error, and gets no token.
- Its temp dir is its own. Ray's job supervisor tells each driver which cluster to join by reading
  `ray_current_cluster` in the head's temp dir, which every `ray start` in that dir rewrites: with
  Ray's default `/tmp/ray` shared, a job's driver joined whichever Ray started last ("Found multiple
  active Ray instances ... Connecting to latest cluster") and logged that cluster's errors. So the
  default temp dir is one for this service alone (`anchor-opt-ray-<uid>`), a start refuses a temp dir
  where another live Ray is recorded, and the head's GCS address is recorded (`gcs_address`) for the
  scheduler to pin every driver to it (`run-job --ray-address`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from service.head_secrets import (
    PROFILE_NAMES,
    private_dir,
    scrubbed_environment,
    static_s3_credentials,
    write_private,
)
from service.process_group import STOP_GRACE_S, group_alive, kill_group
from service.ray_head_site import (
    answers,
    free_port,
    port_taken,
    probe,
    recorded_gcs,
    temp_dir_path,
)

logger = logging.getLogger(__name__)

# Ours, inside the head's temp dir, which Ray makes writable by everyone (try_make_directory_shared).
_PRIVATE_DIR = "anchor-opt"
_STATE_FILE = "head.json"  # process group, URL, token and credentials files of the head we started
_LOCK_FILE = "head.lock"  # held while a head is chosen or started: one start at a time
_TOKEN_PREFIX = "anchor-opt-ray-token-"  # one file per start, so a new start never rewrites a live head's
_CREDENTIALS_PREFIX = "anchor-opt-s3-credentials-"


@contextmanager
def _locked(temp: Path) -> Iterator[None]:
    fd = os.open(temp / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class LocalRayHead:
    """A single-node Ray head on 127.0.0.1 with token authentication, started with `ray start --head`.

    `temp_dir` must be short (Ray puts Unix sockets under it); default `defaulttemp_dir_path()`. The
    head runs in its own session: it outlives this process and ignores its terminal's signals. `env`
    (no secrets: every job sees it) is added to the head's environment; `s3` (StorageSettings) gives
    the keys for its credentials file.
    """

    def __init__(
        self,
        temp_dir: str | None = None,
        *,
        num_cpus: int | None = None,
        num_gpus: int | None = None,
        dashboard_port: int = 8265,
        env: Mapping[str, str] | None = None,
        s3=None,
        timeout_s: float = 90.0,
    ) -> None:
        self.temp = temp_dir_path(temp_dir)
        self.private = self.temp / _PRIVATE_DIR
        self.num_cpus, self.num_gpus = num_cpus, num_gpus  # None: what Ray detects
        self.dashboard_port, self.timeout_s = dashboard_port, timeout_s
        self.env, self.s3 = dict(env or {}), s3
        self.url = f"http://127.0.0.1:{dashboard_port}"
        self.started = False  # whether the last ensure() started the head (False: reused ours)
        self.token: str | None = None  # what the head's job server accepts; sent only to self.url
        self.pgid: int | None = None
        self.gcs_address: str | None = None  # host:port of its GCS, what drivers join (None: unknown)

    def ensure(self) -> str:
        """Job server URL of our head at `dashboard_port`: the one this service started in `temp_dir`
        if it still runs, else a new one. RuntimeError when another process holds the port."""
        self.started = False
        private_dir(self.private)
        with _locked(self.private):
            state = self._state()
            if state and group_alive(state["pgid"]):
                return self._reuse(state)
            self._forget(state)
            if (other := recorded_gcs(self.temp)) and answers(other):
                raise RuntimeError(
                    f"another Ray (its GCS at {other}) was started in {self.temp}, so jobs' drivers "
                    "there could join it instead of this service's head: set ray_temp_dir "
                    "(ANCHOR_OPT_RAY_TEMP_DIR) to a short folder of this service's own"
                )
            if port_taken(self.dashboard_port):
                raise RuntimeError(
                    f"127.0.0.1:{self.dashboard_port} is taken by another process (not a Ray head this "
                    f"service started in {self.temp}): set ray_dashboard_port "
                    "(ANCHOR_OPT_RAY_DASHBOARD_PORT) to a free port"
                )
            return self._start()

    def alive(self) -> bool:
        """Whether the process group of the head ensure() last returned still exists."""
        return self.pgid is not None and group_alive(self.pgid)

    def _state(self) -> dict | None:
        try:
            state = json.loads((self.private / _STATE_FILE).read_text())
            state["pgid"] = int(state["pgid"])
            return state
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _reuse(self, state: dict) -> str:
        if state.get("url") != self.url:
            raise RuntimeError(
                f"a Ray head this service started is still running in {self.temp}, its job server at "
                f"{state.get('url')} (process group {state['pgid']}): set ray_dashboard_port "
                f"(ANCHOR_OPT_RAY_DASHBOARD_PORT) to its port again, or stop it (kill -TERM -{state['pgid']})"
            )
        try:
            token = Path(state["token_file"]).read_text().strip()
        except (OSError, KeyError, TypeError) as e:
            raise RuntimeError(f"the Ray head recorded in {self.temp} has no readable token file: {e}") from e
        deadline = time.monotonic() + self.timeout_s
        while (answer := probe(self.url, token)) is None and time.monotonic() < deadline:
            time.sleep(0.25)  # started a moment ago by another service process, or busy
        if answer != 200:
            how = "does not answer" if answer is None else f"refuses its token (HTTP {answer})"
            raise RuntimeError(
                f"the Ray head recorded in {self.temp} (process group {state['pgid']}) {how} at "
                f"{self.url}; stop it (kill -TERM -{state['pgid']}) and start again"
            )
        self.token, self.pgid = token, state["pgid"]
        self.gcs_address = state.get("gcs_address")
        return self.url

    def _forget(self, state: dict | None) -> None:
        """Removes what a head that is gone left behind: its state, token and credentials files."""
        for name in ("token_file", "credentials_file"):
            if state and state.get(name):
                Path(state[name]).unlink(missing_ok=True)
        (self.private / _STATE_FILE).unlink(missing_ok=True)

    def _command(self) -> list[str]:
        ray = Path(sys.executable).with_name("ray")
        cmd = [str(ray), "start", "--head", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
        cmd += ["--include-dashboard=true", "--dashboard-host", "127.0.0.1"]
        cmd += ["--dashboard-port", str(self.dashboard_port), "--temp-dir", str(self.temp)]
        # Free ports, not the fixed defaults (GCS 6379, agent 52365, Ray Client 10001): with those a
        # second head on the machine (another checkout, a test run) fails to start.
        cmd += ["--port", "0", "--dashboard-agent-listen-port", "0"]
        cmd += ["--ray-client-server-port", free_port(self.dashboard_port)]
        # Workers on ports the system picks, not Ray's reserved 10002-19999, which would refuse any
        # dashboard port inside it (and is shared by every Ray on the machine).
        cmd += ["--min-worker-port", "0", "--max-worker-port", "0"]
        if self.num_cpus is not None:
            cmd += ["--num-cpus", str(self.num_cpus)]
        if self.num_gpus is not None:  # the GPUs service.capacity admits jobs against
            cmd += ["--num-gpus", str(self.num_gpus)]
        return cmd

    def _environment(self, token_file: Path) -> tuple[dict[str, str], Path | None]:
        """The head's environment, and the credentials file written for it (None if not needed)."""
        keys = static_s3_credentials(self.s3, os.environ) or {}
        secret_values = {keys.get("aws_secret_access_key", ""), keys.get("aws_session_token", "")}
        env = scrubbed_environment(os.environ, secret_values)
        env |= self.env
        env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}
        env |= {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
        # Jobs run `anchor-opt ...`: put this environment's scripts first on their PATH.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        credentials = None
        if keys:  # boto3's and pyarrow's default chains read it (the [default] profile)
            text = "[default]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
            credentials = write_private(self.private, _CREDENTIALS_PREFIX, text)
            env["AWS_SHARED_CREDENTIALS_FILE"] = str(credentials)
            for name in PROFILE_NAMES:
                env.pop(name, None)
        return env, credentials

    def _start(self) -> str:
        token = secrets.token_hex(32)
        token_file = write_private(self.private, _TOKEN_PREFIX, token)
        env, credentials = self._environment(token_file)
        cmd = self._command()
        log_path = self.private / "ray-start.log"  # not in the shared temp dir: no planted link
        deadline = time.monotonic() + self.timeout_s
        logger.info("starting a local Ray head: %s", shlex.join(cmd))
        with open(log_path, "w") as log:  # a file, not a pipe: the daemons must not hold our pipe open
            proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        state = {"pgid": proc.pid, "url": self.url, "token_file": str(token_file)}
        state["credentials_file"] = str(credentials) if credentials else None
        (self.private / _STATE_FILE).write_text(json.dumps(state))
        self.token, self.pgid = token, proc.pid
        try:
            rc = proc.wait(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            rc = None
        while rc == 0 and time.monotonic() < deadline:
            if probe(self.url, token) == 200:
                self.started = True
                self.gcs_address = state["gcs_address"] = recorded_gcs(self.temp)
                (self.private / _STATE_FILE).write_text(json.dumps(state))
                return self.url
            time.sleep(0.25)
        kill_group(proc.pid, 5.0)  # what did start of it, so the next ensure() starts clean
        self._forget(state)
        self.pgid = self.token = self.gcs_address = None
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(
            f"no Ray job server answered at {self.url} (waited up to {self.timeout_s:.0f} s); ran "
            f"`{shlex.join(cmd)}` (exit status {rc}), its output ends with:\n{tail}"
        )

    @staticmethod
    def running(temp_dir: str | None = None) -> dict | None:
        """The head this service started and recorded in `temp_dir`, when its process group still
        runs: {"pgid", "url"}; None otherwise (another Ray on the machine is never reported)."""
        state = LocalRayHead(temp_dir)._state()
        if state is None or not group_alive(state["pgid"]):
            return None
        return {"pgid": state["pgid"], "url": state.get("url")}

    def shutdown(self) -> bool:
        """Stops the head if the last ensure() started it (not one it reused); whether it did."""
        return self.started and self.stop(str(self.temp))

    @staticmethod
    def stop(temp_dir: str | None = None, grace_s: float = STOP_GRACE_S) -> bool:
        """Stops the head recorded in `temp_dir` (not `ray stop`: that kills every Ray on the
        machine): SIGTERM to its process group, SIGKILL after `grace_s`. Workers and actors exit when
        the raylet goes; job drivers run in sessions of their own and end when their calls to Ray
        fail (a driver that never calls Ray again runs on). False if no head of ours was recorded."""
        head = LocalRayHead(temp_dir)
        if not (head.private / _STATE_FILE).exists():
            return False
        with _locked(private_dir(head.private)):
            state = head._state()
            if state is None:
                return False
            kill_group(state["pgid"], grace_s)
            head._forget(state)
        return True
