"""Jobs end to end: the service over real HTTP, a real Ray head started by the service (the embedded
default), and a real S3 endpoint (moto's server) as the job store, reached through the same boto3
code as production. Each job is `anchor-opt run-job` as a Ray job, training on Ray Train.

The waits below are bounds against a hang (a broken job would otherwise stall CI), not timings.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from service.app import create_app
from service.auth import hash_token
from service.launcher import LocalRayHead, RayJobs
from service.settings import ServiceSettings, TokenEntry
from tests.helpers import client, free_port, serving
from trainer.cli import main
from trainer.contract.storage import StorageSettings, open_storage, s3_client
from trainer.contract.store import JobStore

TOKEN = "e2e-token"
PNG = b"\x89PNG\r\n\x1a\n"
HANG_S = 300  # a job that has not got there by now is stuck


def spec(name: str, epochs: int) -> dict:
    return {
        "name": name,
        "data": {"synthetic": {"num_train": 64, "num_val": 16}},
        "model": {"image_size": 64},
        "optim": {"epochs": epochs, "batch_size": 8},
        "resources": {"workers": 1, "cpus_per_worker": 1, "max_failures": 0},
    }


@pytest.fixture(scope="module")
def settings(s3_endpoint, tmp_path_factory):
    """A store in a fresh bucket of the moto server, one tenant, one job at a time; the Ray head the
    service starts is stopped when the module ends."""
    s3 = StorageSettings(
        endpoint_url=s3_endpoint, path_style=True, cache_dir=tmp_path_factory.mktemp("cache")
    )
    bucket = f"e2e-{uuid.uuid4().hex[:12]}"
    s3_client(s3).create_bucket(Bucket=bucket)
    ray_temp = tempfile.mkdtemp(prefix="rsvc-", dir="/tmp")  # short: Ray puts sockets under it
    yield ServiceSettings(
        store_uri=f"s3://{bucket}/store",
        s3=s3,
        tokens=[TokenEntry(tenant="team-a", sha256=hash_token(TOKEN))],
        ray_temp_dir=ray_temp,
        ray_num_cpus=2,
        ray_dashboard_port=free_port(),
        max_running_jobs=1,
        scheduler_interval_s=0.5,
    )
    LocalRayHead.stop(ray_temp)
    shutil.rmtree(ray_temp, ignore_errors=True)


@pytest.fixture(scope="module")
def store(settings) -> JobStore:
    return JobStore(open_storage(settings.store_uri, settings.s3))


def wait_for(c, job_id: str, done, what: str) -> dict:
    """Polls GET /jobs/{id} until `done(job)`; returns that job document."""
    deadline = time.monotonic() + HANG_S
    while True:
        job = c.get(f"/jobs/{job_id}").json()
        if done(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} never became {what}; last seen: {job}")
        time.sleep(0.3)


def wait_for_second(c, first: str) -> str:
    """The id of the job submitted after `first` (by the CLI, in another thread)."""
    deadline = time.monotonic() + HANG_S
    while not (others := [j["id"] for j in c.get("/jobs").json()["items"] if j["id"] != first]):
        assert time.monotonic() < deadline, "the CLI never submitted its job"
        time.sleep(0.2)
    return others[0]


def training(job: dict) -> bool:
    return job["state"] == "RUNNING" and job["progress"]["step"] > 0


def ended(job: dict) -> bool:
    return job["state"] in ("SUCCEEDED", "FAILED", "CANCELLED")


def test_jobs_run_on_ray_one_at_a_time_to_success(settings, store, tmp_path):
    with serving(create_app(settings)) as base:
        c = client(base, TOKEN)
        assert c.get("/readyz").json() == {"status": "ok", "checks": {"storage": "ok", "ray": "ok"}}
        first = c.post("/jobs", json=spec("first", epochs=2)).json()["id"]
        running = wait_for(c, first, lambda j: j["state"] != "QUEUED", "started")
        assert running["state"] == "RUNNING", running
        # The second through the CLI, which follows it to its end. One job at a time: it waits, not
        # even handed to Ray, while the first runs.
        job_file, picture = tmp_path / "second.yaml", tmp_path / "second.png"
        job_file.write_text(yaml.safe_dump(spec("second", epochs=2)))
        waited = []
        cli = threading.Thread(target=lambda: waited.append(main([
            "submit", str(job_file), "--url", base, "--token", TOKEN, "--wait", "--plot", str(picture)
        ])))  # fmt: skip
        cli.start()
        second = wait_for_second(c, first)
        assert store.status(second).state == "QUEUED" and store.status(second).launched_at is None
        done = wait_for(c, first, ended, "ended")
        assert done["state"] == "SUCCEEDED", done["error"]
        assert done["progress"]["step"] == done["progress"]["total_steps"] == 16
        assert done["progress"]["workers"] == 1 and done["finished_at"] >= done["started_at"]

        snaps = c.get(f"/jobs/{first}/anchors").json()["snapshots"]
        steps = [s["step"] for s in snaps]
        assert steps[0] == 0 and steps[-1] == 16 and steps == sorted(set(steps)) and len(steps) >= 3
        assert c.get(f"/jobs/{first}/anchors/latest").json() == snaps[-1] == done["latest_anchors"]
        assert [m["epoch"] for m in c.get(f"/jobs/{first}/metrics").json()["epochs"]] == [1, 2]
        result = c.get(f"/jobs/{first}/result").json()
        assert result["result"]["steps"] == 16 and set(done["artifacts"]) >= {"anchors_yaml", "weights"}
        plot = c.get(f"/jobs/{first}/anchors/plot.png")
        assert plot.headers["content-type"] == "image/png" and plot.content.startswith(PNG)
        assert "anchors:" in c.get(f"/jobs/{first}/artifacts/anchors_yaml").text
        logs = c.get(f"/jobs/{first}/logs").json()["lines"]
        assert any("SUCCEEDED" in line for line in logs), logs[-10:]

        cli.join(timeout=HANG_S)
        assert waited == [0] and picture.read_bytes().startswith(PNG)  # exit status 0: SUCCEEDED
        assert c.get(f"/jobs/{second}").json()["state"] == "SUCCEEDED"
        metrics = c.get("/metrics").text
        assert 'anchor_opt_jobs{state="SUCCEEDED"} 2.0' in metrics


def test_cancelling_a_running_job_stops_its_ray_job(settings, store):
    with serving(create_app(settings)) as base:
        c = client(base, TOKEN)
        job_id = c.post("/jobs", json=spec("to-cancel", epochs=40)).json()["id"]
        wait_for(c, job_id, training, "training")
        cancelled = c.post(f"/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "CANCELLED"
        assert c.post(f"/jobs/{job_id}/cancel").json()["state"] == "CANCELLED"  # idempotent
        ray, ray_job = _ray(settings), store.status(job_id).ray_submission_id
        deadline = time.monotonic() + HANG_S
        while ray.state(ray_job).status not in ("STOPPED", "FAILED", "SUCCEEDED"):
            assert time.monotonic() < deadline, "the Ray job was never stopped"
            time.sleep(0.3)
        assert ray.state(ray_job).status == "STOPPED"
        time.sleep(2 * settings.scheduler_interval_s)  # a reconcile pass sees the stopped Ray job
        job = c.get(f"/jobs/{job_id}").json()
        assert job["state"] == "CANCELLED" and job["error"] == "cancelled by request"
        assert job["progress"]["step"] < job["progress"]["total_steps"]


def test_a_restarted_service_keeps_serving_a_running_job_and_sees_it_finish(settings):
    with serving(create_app(settings)) as base:
        c = client(base, TOKEN)
        job_id = c.post("/jobs", json=spec("across-restart", epochs=12)).json()["id"]
        before = wait_for(c, job_id, training, "training")
    with serving(create_app(settings)) as base:  # a new process would do the same: all state is stored
        c = client(base, TOKEN)
        again = c.get(f"/jobs/{job_id}").json()
        assert again["state"] in ("RUNNING", "SUCCEEDED")
        assert again["progress"]["step"] >= before["progress"]["step"]
        done = wait_for(c, job_id, ended, "ended")
        assert done["state"] == "SUCCEEDED", done["error"]
        assert done["progress"]["attempt"] == 0  # the job itself never noticed


def test_a_ray_job_stopped_behind_the_services_back_ends_failed_with_rays_message(settings, store):
    with serving(create_app(settings)) as base:
        c = client(base, TOKEN)
        job_id = c.post("/jobs", json=spec("killed", epochs=40)).json()["id"]
        wait_for(c, job_id, training, "training")
        ray_job = store.status(job_id).ray_submission_id
        assert _ray(settings).stop(ray_job)  # someone else, straight to Ray
        job = wait_for(c, job_id, ended, "ended")
        assert job["state"] == "FAILED"
        assert job["error"].startswith("Ray job STOPPED:"), job["error"]


def test_a_running_job_ray_no_longer_knows_is_marked_failed(settings, store):
    """The store says RUNNING on a Ray that has never heard of the job (the cluster was replaced)."""
    from trainer.contract.spec import JobSpec, JobState

    record = store.create(JobSpec.model_validate(spec("orphan", epochs=1)), submitted_by="team-a")
    now = time.time()
    orphan = store.status(record.id).model_copy(
        update={"state": JobState.RUNNING, "launched_at": now, "started_at": now, "updated_at": now}
    )
    store.write_status(record.id, orphan)
    with serving(create_app(settings)) as base:
        job = wait_for(client(base, TOKEN), record.id, ended, "ended")
    assert job["state"] == "FAILED" and "Ray no longer knows this job" in job["error"]


def _ray(settings: ServiceSettings) -> RayJobs:
    """The service's Ray head, straight: it wants the token the service started it with."""
    head = LocalRayHead(settings.ray_temp_dir, dashboard_port=settings.ray_dashboard_port)
    return RayJobs(head.ensure(), token=head.token)


def test_a_second_store_on_the_same_ray_runs_its_own_job_of_the_same_id(settings, store):
    """Finding 9: one tenant and Idempotency-Key make the same job id in any store. A job of that
    id in another store sharing this Ray head (or a wiped one) ran on Ray before; the new one must
    run as a Ray job of its own, not "end" with the old one's state without running."""
    key = {"Idempotency-Key": "nightly-both-stores"}
    with serving(create_app(settings)) as base:
        c = client(base, TOKEN)
        first = c.post("/jobs", json=spec("first-store", epochs=40), headers=key).json()["id"]
        deadline = time.monotonic() + HANG_S
        while store.status(first).launched_at is None:  # handed to Ray
            assert time.monotonic() < deadline, "the first store never launched its job"
            time.sleep(0.2)
        assert c.post(f"/jobs/{first}/cancel").json()["state"] == "CANCELLED"
    bucket = f"e2e-{uuid.uuid4().hex[:12]}"
    s3_client(settings.s3).create_bucket(Bucket=bucket)
    other = settings.model_copy(update={"store_uri": f"s3://{bucket}/store"})
    with serving(create_app(other)) as base:
        c = client(base, TOKEN)
        second = c.post("/jobs", json=spec("second-store", epochs=1), headers=key).json()["id"]
        assert second == first  # the same id, by design
        done = wait_for(c, second, ended, "ended")
        assert done["state"] == "SUCCEEDED", done["error"]
        assert done["progress"]["step"] == done["progress"]["total_steps"] == 8
    theirs = JobStore(open_storage(other.store_uri, other.s3)).status(second).ray_submission_id
    assert theirs != store.status(first).ray_submission_id
    assert _ray(settings).state(theirs) is not None  # a Ray job of its own


@contextmanager
def read_only_s3() -> Iterator[str]:
    """Another endpoint onto the moto server's buckets (moto keeps them in this process) that
    answers every write 403 AccessDenied: the store as a driver with read-only credentials (or
    under a bucket policy that denies it writes) sees it."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    moto = DomainDispatcherApplication(create_backend_app)
    denied = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"

    def app(environ, start_response):
        if environ["REQUEST_METHOD"] in ("PUT", "POST", "DELETE"):
            start_response(
                "403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(denied)))]
            )
            return [denied]
        return moto(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def test_a_driver_that_cannot_write_the_store_fails_with_the_cause(settings):
    """Finding 10: a job whose driver may read but not write the store failed with 1,243 characters
    of unrelated Ray log as its error. Its error is the cause, in a line."""
    with read_only_s3() as endpoint:
        app = create_app(settings)
        scheduler = app.state.ctx.scheduler
        scheduler.job_env = scheduler.job_env | {"ANCHOR_OPT_S3_ENDPOINT_URL": endpoint}  # the driver's view
        with serving(app) as base:
            c = client(base, TOKEN)
            job_id = c.post("/jobs", json=spec("read-only", epochs=1)).json()["id"]
            job = wait_for(c, job_id, ended, "ended")
    assert job["state"] == "FAILED"
    assert job["error"].startswith("Ray job FAILED: the driver exited with code 2: s3://"), job["error"]
    assert job["error"].endswith("status.json: write failed: AccessDenied Access Denied"), job["error"]


def test_a_job_joins_the_services_head_whatever_another_ray_recorded_in_its_temp_dir(settings):
    """Issue 17, finding 10: with more than one Ray on the machine, Ray's job supervisor tells a
    driver to join the Ray that the last `ray start` in the head's temp dir recorded in
    `ray_current_cluster` ("Found multiple active Ray instances ... Connecting to latest cluster"):
    a job's driver joined another Ray and logged its errors. Here a second Ray runs and is recorded
    in our head's temp dir, as a `ray start` there would do; the job, pinned to its head's GCS
    (`run-job --ray-address`), runs on it all the same (unpinned, it fails to join the other)."""
    other_temp = tempfile.mkdtemp(prefix="rsvo-", dir="/tmp")
    other = LocalRayHead(other_temp, num_cpus=1, dashboard_port=free_port())
    current = Path(settings.ray_temp_dir) / "ray_current_cluster"
    try:
        other.ensure()
        with serving(create_app(settings)) as base:
            ours = current.read_text()
            current.write_text(other.gcs_address)
            try:
                c = client(base, TOKEN)
                job_id = c.post("/jobs", json=spec("pinned", epochs=1)).json()["id"]
                job = wait_for(c, job_id, ended, "ended")
            finally:
                current.write_text(ours)
    finally:
        LocalRayHead.stop(other_temp)
        shutil.rmtree(other_temp, ignore_errors=True)
    assert job["state"] == "SUCCEEDED", job["error"]
