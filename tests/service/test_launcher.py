"""The launcher against a real Ray head: RayJobs (submit idempotent by id, state, logs, stop, an
unreachable job server), and the embedded head that only the service can drive (service.ray_head):
token authentication always on, every port on loopback, no secret in its environment or logs, only
our own head reused, and a head that died started again by the next call.

One head for the module (heads are slow to start); the last test kills it and checks it comes back.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from service.app import default_launcher
from service.head_secrets import scrubbed_environment
from service.launcher import EmbeddedRay, LocalRayHead, RayJobs, RayUnavailable
from service.ray_head_site import default_temp_dir
from service.settings import ServiceSettings
from tests.helpers import free_port
from trainer.contract.storage import StorageSettings

from ..processes import listening, loopback, session_processes

HANG_S = 120  # a bound against a hang, not a timing
# Secrets the service holds, each where a service may hold one; none may reach the head.
S3_KEY_ID, S3_SECRET = "AKIAEMBEDDEDHEADTEST", "s3-secret-from-the-settings-0123456789"
ENV_SECRET, SESSION_TOKEN = "aws-secret-from-the-environment-9876543210", "aws-session-token-abcdef"
TOKENS = json.dumps([{"tenant": "t", "sha256": "ab" * 32}])
SECRETS = [S3_SECRET, ENV_SECRET, SESSION_TOKEN, TOKENS]


def port_in_rays_worker_range() -> int:
    """A free port in 10002-19999, where Ray 2.60 reserves its default worker ports (finding 15)."""
    for port in random.sample(range(10002, 20000), 500):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in 10002-19999")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """The service's default launcher on an embedded head started from an environment full of
    secrets, with no token file anywhere (HOME is empty, as on a fresh machine)."""
    temp = tempfile.mkdtemp(prefix="rlch-", dir="/tmp")  # short: Ray puts sockets under it
    s3 = StorageSettings(access_key_id=S3_KEY_ID, secret_access_key=S3_SECRET)
    settings = ServiceSettings(
        store_uri=str(tmp_path_factory.mktemp("store")), ray_temp_dir=temp, ray_num_cpus=1,
        ray_dashboard_port=port_in_rays_worker_range(), s3=s3,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        env.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMTHEENVIRONMENT")
        env.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)
        env.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
        env.setenv("ANCHOR_OPT_TOKENS", TOKENS)
        env.setenv("COPY_OF_A_SECRET", S3_SECRET)  # a harmless name: caught by its value
        for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
            env.delenv(name, raising=False)
        launcher = default_launcher(settings)
    yield launcher, settings
    LocalRayHead.stop(temp)
    shutil.rmtree(temp, ignore_errors=True)


def ended(jobs, job_id: str) -> str:
    deadline = time.monotonic() + HANG_S
    while (state := jobs.state(job_id).status) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, f"Ray job {job_id} stuck in {state}"
        time.sleep(0.2)
    return state


def request(method: str, url: str, body: dict | None = None, token: str | None = None) -> int:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=30):
            return 200
    except urllib.error.HTTPError as e:
        return e.code


# --- finding 2: nobody but the service drives the head ---------------------------------------------------


def test_the_job_server_refuses_jobs_without_our_token(embedded, tmp_path):
    """Ray's Jobs API runs any command it accepts: over plain HTTP, no token or a wrong one is refused,
    and nothing runs."""
    launcher, settings = embedded
    url = f"http://127.0.0.1:{settings.ray_dashboard_port}"
    marker = tmp_path / "ran"
    for token, refused in ((None, 401), ("not-the-token", 403)):
        job = {"entrypoint": f"touch {marker}", "submission_id": f"intruder-{refused}"}
        assert request("POST", f"{url}/api/jobs/", job, token) == refused
        assert launcher.state(f"intruder-{refused}") is None  # Ray never heard of it
    assert request("GET", f"{url}/api/version") == 401
    assert not marker.exists()
    assert launcher.ping()  # the service's own token is accepted


def test_the_token_is_the_services_alone(embedded):
    launcher, settings = embedded
    [token_file] = launcher.head.private.glob("anchor-opt-ray-token-*")
    assert launcher.head.private.stat().st_mode & 0o777 == 0o700
    assert token_file.stat().st_mode & 0o777 == 0o600 and token_file.read_text() == launcher.head.token
    assert len(launcher.head.token) >= 32
    for pid in session_processes(launcher.head.pgid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        assert launcher.head.token.encode() not in cmdline + environ, pid


def test_every_port_of_the_head_is_on_loopback(embedded, tmp_path):
    """GCS, raylet, object manager, dashboard and its agent, client server, runtime-env agent, and
    the workers and driver of a running job: nothing listens beyond 127.0.0.1."""
    launcher, settings = embedded
    release = tmp_path / "release"
    script = (
        "import os, time, ray\nray.init()\n"
        "@ray.remote\nclass Echo:\n    def ping(self): return os.getpid()\n"
        "echo = Echo.remote(); ray.get(echo.ping.remote()); print('up', 'and', 'running', flush=True)\n"
        f"deadline = time.time() + {HANG_S}\n"
        f"while not os.path.exists({str(release)!r}) and time.time() < deadline: time.sleep(0.2)\n"
    )
    launcher.submit("sockets", [sys.executable, "-c", script])
    deadline = time.monotonic() + HANG_S
    while "up and running" not in (launcher.logs("sockets") or ""):  # not in the echoed entrypoint
        assert launcher.state("sockets").status in ("PENDING", "RUNNING"), launcher.logs("sockets")
        assert time.monotonic() < deadline, "the job never got its actor"
        time.sleep(0.3)
    sockets = listening(session_processes(launcher.head.pgid))
    names = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in {pid for *_, pid in sockets}}
    release.touch()
    assert ended(launcher, "sockets") == "SUCCEEDED"
    assert len({port for _, port, _ in sockets}) >= 8, sockets  # the listing sees the head's sockets
    assert any(b"ray::Echo" in n for n in names.values()), names  # and the job's actor's
    assert ("127.0.0.1", settings.ray_dashboard_port) in {(a, p) for a, p, _ in sockets}
    assert [s for s in sockets if not loopback(s[0])] == []


def test_no_secret_reaches_the_heads_environment_its_jobs_or_its_logs(embedded):
    launcher, settings = embedded
    launcher.submit("env", ["env"])
    assert ended(launcher, "env") == "SUCCEEDED"
    printed = launcher.logs("env", tail=10_000)
    assert "RAY_AUTH_TOKEN_PATH=" in printed and "PATH=" in printed  # it did print the environment
    leaked = [s for s in SECRETS if s in printed]
    assert leaked == [] and "AWS_ACCESS_KEY_ID" not in printed and "ANCHOR_OPT_TOKENS" not in printed
    for pid in session_processes(launcher.head.pgid):
        try:
            seen = Path(f"/proc/{pid}/environ").read_bytes() + Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        assert [s for s in SECRETS if s.encode() in seen] == [], pid
    # No file the head wrote holds a secret or the token, but the two files meant to.
    private = {*launcher.head.private.glob("anchor-opt-ray-token-*")}
    private |= {*launcher.head.private.glob("anchor-opt-s3-credentials-*")}
    needles = [s.encode() for s in [*SECRETS, launcher.head.token]]
    for path in Path(settings.ray_temp_dir).rglob("*"):
        if path.is_file() and not path.is_symlink() and path not in private:
            data = path.read_bytes()
            assert [n for n in needles if n in data] == [], path


def test_jobs_still_get_the_s3_keys_from_a_private_file(embedded):
    """boto3's default chain (and pyarrow's) in a job finds the settings' keys in the credentials file."""
    launcher, settings = embedded
    script = (
        "import boto3; c = boto3.Session().get_credentials()\n"
        "print('method', c.method, 'key', c.access_key, 'secret-ok', c.secret_key == "
        f"{S3_SECRET!r})"
    )
    launcher.submit("credentials", [sys.executable, "-c", script])
    assert ended(launcher, "credentials") == "SUCCEEDED", launcher.logs("credentials")
    assert f"method shared-credentials-file key {S3_KEY_ID} secret-ok True" in launcher.logs("credentials")
    [credentials] = launcher.head.private.glob("anchor-opt-s3-credentials-*")
    assert credentials.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("AWS_SECRET_ACCESS_KEY", False), ("AWS_ACCESS_KEY_ID", False), ("AWS_SESSION_TOKEN", False),
        ("ANCHOR_OPT_S3_SECRET_ACCESS_KEY", False), ("ANCHOR_OPT_S3_ACCESS_KEY_ID", False),
        ("ANCHOR_OPT_TOKENS", False), ("RAY_AUTH_TOKEN", False), ("MINIO_ROOT_PASSWORD", False),
        ("GITHUB_TOKEN", False), ("OPENAI_API_KEY", False), ("AWS_CONTAINER_AUTHORIZATION_TOKEN", False),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", True), ("AWS_SHARED_CREDENTIALS_FILE", True),
        ("AWS_REGION", True), ("ANCHOR_OPT_S3_ENDPOINT_URL", True), ("PATH", True), ("HOME", True),
    ],
)  # fmt: skip
def test_the_heads_environment_is_scrubbed_by_name(name, kept):
    assert (name in scrubbed_environment({name: "x"})) is kept


def test_a_dashboard_port_in_rays_old_worker_range_works(embedded):
    """Finding 15: ports 10002-19999 failed (Ray reserves them for workers); the head now gives its
    workers ports the system picks, so any free port does."""
    launcher, settings = embedded
    assert 10002 <= settings.ray_dashboard_port <= 19999 and launcher.ping()


# --- the job server API -------------------------------------------------------------------------------


def test_submit_runs_once_per_id_and_keeps_the_logs(embedded):
    jobs = embedded[0]
    assert jobs.ping()
    entry = [sys.executable, "-c", "import os; print('hello from', os.environ['GREETING'])"]
    jobs.submit("echo-1", entry, env={"GREETING": "the launcher"})
    jobs.submit("echo-1", entry, env={"GREETING": "the launcher"})  # a retry: no second job
    assert ended(jobs, "echo-1") == "SUCCEEDED"
    assert "hello from the launcher" in jobs.logs("echo-1")
    assert jobs.logs("echo-1", tail=1).count("\n") <= 1
    with pytest.raises(RuntimeError, match="another entrypoint"):
        jobs.submit("echo-1", [sys.executable, "-c", "print('other')"])
    assert not jobs.stop("echo-1")  # ended already


def test_stop_a_running_job(embedded):
    jobs = embedded[0]
    jobs.submit("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"])
    assert jobs.stop("sleeper")
    assert ended(jobs, "sleeper") == "STOPPED"


def test_unknown_jobs(embedded):
    jobs = embedded[0]
    assert jobs.state("no-such-job") is None and jobs.logs("no-such-job") is None
    assert jobs.stop("no-such-job") is False


def test_an_unreachable_job_server():
    jobs = RayJobs(f"http://127.0.0.1:{free_port()}")
    assert not jobs.ping(timeout_s=1)
    with pytest.raises(RayUnavailable, match="unreachable"):
        jobs.state("any")


# --- finding 15: reuse our own head only, stop only what we started -----------------------------------------


def test_a_second_launcher_reuses_our_head_and_leaves_it_running(embedded):
    """What `anchor-opt demo` does when another service process started the head in its folder:
    it reuses that head, and stopping the demo leaves it running."""
    launcher, settings = embedded
    again = default_launcher(settings)
    assert again.address == launcher.address and not again.head.started
    assert again.head.token == launcher.head.token
    assert again.close() is False
    assert launcher.ping() and again.ping()


def test_our_head_at_another_port_is_named_not_duplicated(embedded):
    _, settings = embedded
    other = LocalRayHead(settings.ray_temp_dir, dashboard_port=free_port())
    with pytest.raises(RuntimeError, match=f"still running in .*127.0.0.1:{settings.ray_dashboard_port}"):
        other.ensure()


class _FakeJobServer(http.server.BaseHTTPRequestHandler):
    """Answers GET /api/version like a Ray job server, and records what it was sent."""

    seen: list[dict] = []

    def do_GET(self):
        self.seen.append(dict(self.headers))
        body = b'{"version": "4", "ray_version": "2.60.0"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_port_held_by_another_server_is_an_error_and_gets_no_token(monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "a-token-of-the-services-environment")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeJobServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    temp = tempfile.mkdtemp(prefix="rlcx-", dir="/tmp")
    try:
        head = LocalRayHead(temp, dashboard_port=server.server_address[1])
        with pytest.raises(RuntimeError, match="taken by another process.*ray_dashboard_port"):
            head.ensure()
        assert not any("Authorization" in h for h in _FakeJobServer.seen), _FakeJobServer.seen
        assert head.token is None and not head.started
    finally:
        server.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_temp_dir_where_another_live_ray_is_recorded_is_refused(tmp_path):
    """Issue 17, finding 10: drivers are told the Ray recorded in the head's temp dir; a head is not
    started where another Ray (here: its GCS port, listening) was started last."""
    with socket.socket() as gcs:
        gcs.bind(("127.0.0.1", 0))
        gcs.listen()
        (tmp_path / "ray_current_cluster").write_text(f"127.0.0.1:{gcs.getsockname()[1]}")
        head = LocalRayHead(str(tmp_path), dashboard_port=free_port())
        with pytest.raises(RuntimeError, match="another Ray .* was started in .*ANCHOR_OPT_RAY_TEMP_DIR"):
            head.ensure()
        assert head.token is None and not head.started


def test_the_default_temp_dir_is_this_users_own_not_rays(monkeypatch):
    monkeypatch.setenv("RAY_TMPDIR", "/tmp/x")
    assert default_temp_dir() == f"/tmp/x/anchor-opt-ray-{os.getuid()}"
    assert LocalRayHead().temp == Path(default_temp_dir())


def test_the_embedded_launcher_pins_drivers_to_its_heads_gcs(embedded):
    """The address the scheduler gives each driver (`run-job --ray-address`) is the head's own GCS,
    as `ray start` recorded it, where a driver joins this head."""
    embedded, _ = embedded
    assert embedded.driver_address == embedded.head.gcs_address
    host, _, port = embedded.driver_address.rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0
    job = f"pin-{random.randrange(10**9)}"
    script = f"import ray; ray.init(address={embedded.driver_address!r}); print('joined', ray.get_runtime_context().gcs_address)"  # noqa: E501
    embedded.submit(job, [sys.executable, "-c", script])
    assert ended(embedded, job) == "SUCCEEDED", embedded.logs(job)
    assert f"joined {embedded.driver_address}" in embedded.logs(job)
    assert RayJobs("http://127.0.0.1:1").driver_address is None  # a cluster's head tells its drivers


def test_a_head_that_fails_to_start_leaves_nothing_behind():
    temp = tempfile.mkdtemp(prefix="rlcf-", dir="/tmp")
    try:
        head = LocalRayHead(temp, num_cpus=-1, dashboard_port=free_port())  # `ray start` refuses it
        with pytest.raises(RuntimeError, match="no Ray job server answered.*exit status [1-9]"):
            head.ensure()
        assert sorted(p.name for p in head.private.iterdir()) == ["head.lock", "ray-start.log"]
        assert head.token is None and not head.alive() and not LocalRayHead.stop(temp)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def test_a_private_folder_others_can_write_is_refused(tmp_path):
    """Ray makes its temp dir writable by everyone; our files live in a folder of ours inside it."""
    (tmp_path / "anchor-opt").mkdir(mode=0o777)
    (tmp_path / "anchor-opt").chmod(0o777)
    with pytest.raises(RuntimeError, match="not a folder of this user's alone.*ray_temp_dir"):
        LocalRayHead(str(tmp_path), dashboard_port=free_port()).ensure()


# --- finding 10: a dead head comes back ----------------------------------------------------------------


def test_a_killed_head_is_started_again_by_the_next_call(embedded, caplog):
    """Last in the module: it replaces the module's head."""
    launcher, settings = embedded
    assert isinstance(launcher, EmbeddedRay)
    launcher.restart_interval_s = 0  # the head started long ago in this test's terms
    old_pgid, old_token = launcher.head.pgid, launcher.head.token
    os.killpg(old_pgid, signal.SIGKILL)
    deadline = time.monotonic() + HANG_S
    while launcher.head.alive():
        assert time.monotonic() < deadline, "the killed head's processes never went away"
        time.sleep(0.2)
    caplog.set_level(logging.WARNING, logger="service.launcher")
    launcher.submit("after-restart", [sys.executable, "-c", "print('back')"])
    assert ended(launcher, "after-restart") == "SUCCEEDED" and "back" in launcher.logs("after-restart")
    assert launcher.head.pgid != old_pgid and launcher.head.started and launcher.head.token != old_token
    restarts = [r for r in caplog.records if "is gone" in r.getMessage()]
    assert len(restarts) == 1, [r.getMessage() for r in caplog.records]
    url = f"http://127.0.0.1:{settings.ray_dashboard_port}"
    assert request("GET", f"{url}/api/version", token=old_token) == 403  # the old token is worthless


def test_every_launcher_has_the_protocols_methods_with_its_signatures():
    """The scheduler and the API are written against service.launcher.Launcher; both launchers the
    service builds must take the same calls."""
    import inspect

    from service.launcher import EmbeddedRay, Launcher, RayJobs

    for method in ("submit", "stop", "state", "logs", "ping"):
        want = inspect.signature(getattr(Launcher, method))
        for cls in (RayJobs, EmbeddedRay):
            got = inspect.signature(getattr(cls, method))
            assert list(got.parameters) == list(want.parameters) or (
                cls is EmbeddedRay and method == "submit"  # passes submit's keywords on (**kwargs)
            ), f"{cls.__name__}.{method}{got} is not Launcher.{method}{want}"
    assert isinstance(inspect.getattr_static(EmbeddedRay, "address"), property)
