"""The scheduler against a real Ray head (the embedded one, as the service starts it) and a real job
store, a local folder or a bucket of the moto server: an ended state is final however writers race,
one bad job costs only itself, and every launch is its own Ray job.

The races are real threads writing through the real store, many rounds; a Ray job here is `anchor-opt
run-job` for a job that is cancelled at once, so its driver never trains.
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import threading
import time

import pytest

from service.app import create_app, default_launcher
from service.launcher import LocalRayHead
from service.records import Records
from service.scheduler import MAX_REASON_CHARS, Scheduler, ray_reason
from service.settings import ServiceSettings
from tests.helpers import client, free_port, serving
from trainer.contract.documents import JobStatus
from trainer.contract.spec import JobSpec, JobState
from trainer.contract.storage import StorageSettings, open_storage
from trainer.contract.store import JobStore
from trainer.contract.writer import RunWriter

# A writer thread that raises (a transition that gave up) fails the test, not just warns.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
SPEC = JobSpec.model_validate(
    {"name": "tiny", "optim": {"epochs": 1}, "data": {"synthetic": {"num_train": 8}}}
)
ROUNDS = 20


@pytest.fixture(scope="module")
def ray_head():
    """The embedded Ray head the service would start (service.app.default_launcher), 1 CPU."""
    temp = tempfile.mkdtemp(prefix="rsch-", dir="/tmp")  # short: Ray puts sockets under it
    settings = ServiceSettings(ray_temp_dir=temp, ray_num_cpus=1, ray_dashboard_port=free_port())
    launcher = default_launcher(settings)
    yield launcher
    LocalRayHead.stop(temp)
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path) -> tuple[str, StorageSettings]:
    """A store URI and the storage settings to reach it."""
    if request.param == "local":
        return str(tmp_path / "store"), StorageSettings()
    bucket, settings = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/store", settings


def _scheduler(uri: str, settings: StorageSettings, launcher) -> Scheduler:
    store = JobStore(open_storage(uri, settings))
    return Scheduler(store, Records(store), launcher, uri, max_running=100)


def _running(store: JobStore, uri: str, settings: StorageSettings) -> tuple[str, RunWriter]:
    """A job as its driver has it once Ray runs it: launched (as a Ray job this head never saw, so
    stopping it is a no-op), RUNNING, with the run's writer."""
    job = store.create(SPEC, submitted_by="team-a").id
    now = time.time()
    store.write_status(
        job, JobStatus(state=JobState.RUNNING, launched_at=now, started_at=now, updated_at=now)
    )
    return job, RunWriter(store.run_uri(job), settings)


def test_a_cancel_racing_progress_writes_always_ends_cancelled(ray_head, where):
    """Finding 4: rank 0's progress writes and a late driver write race a cancel, round after
    round; a progress write made on a status read before the cancel must never land. Then a tick
    (reconcile) must leave every cancelled job CANCELLED, not turn it into FAILED."""
    uri, settings = where
    scheduler = _scheduler(uri, settings, ray_head)
    store = scheduler.store
    jobs = []
    for _ in range(ROUNDS):
        job, writer = _running(store, uri, settings)
        cancelled = threading.Event()

        def report(writer=writer, cancelled=cancelled) -> None:
            step = 0
            while not cancelled.is_set():  # as a worker does until Ray stops it, and a few after
                step += 1
                writer.update_status(step=step, eta_s=1.0)
            for late in range(3):
                writer.update_status(step=step + late + 1, eta_s=1.0)

        workers = [threading.Thread(target=report, daemon=True) for _ in range(2)]
        for w in workers:
            w.start()
        time.sleep(random.uniform(0, 0.05))
        answered = scheduler.cancel(job)
        cancelled.set()
        for w in workers:
            w.join(timeout=60)
        assert answered.state is JobState.CANCELLED
        jobs.append(job)
    scheduler.tick()  # reconcile: Ray never knew these jobs; a RUNNING one would become FAILED
    for job in jobs:
        status = store.status(job)
        assert status.state is JobState.CANCELLED, (job, status)
        assert status.error == "cancelled by request"


def test_an_end_and_a_cancel_racing_agree_on_which_came_first(ray_head, where):
    """The driver records SUCCEEDED while the service cancels: whichever lands first is the end,
    and both callers are told that same end (so a cancel answered CANCELLED is what stays, and a
    SUCCEEDED the driver recorded is never turned into CANCELLED)."""
    uri, settings = where
    scheduler = _scheduler(uri, settings, ray_head)
    outcomes = set()
    for _ in range(ROUNDS):
        job, writer = _running(scheduler.store, uri, settings)
        told = {}

        def end(writer=writer, told=told) -> None:
            told["driver"] = writer.update_status(state=JobState.SUCCEEDED, eta_s=0.0)

        driver = threading.Thread(target=end, daemon=True)
        driver.start()
        time.sleep(random.uniform(0, 0.01))
        told["cancel"] = scheduler.cancel(job)
        driver.join(timeout=60)
        final = scheduler.store.status(job).state
        assert told["driver"].state is told["cancel"].state is final, (job, told, final)
        outcomes.add(final)
    assert outcomes <= {JobState.SUCCEEDED, JobState.CANCELLED}


def test_an_ended_job_is_not_ended_again(ray_head, tmp_path):
    uri, settings = str(tmp_path / "store"), StorageSettings()
    scheduler = _scheduler(uri, settings, ray_head)
    job, writer = _running(scheduler.store, uri, settings)
    writer.update_status(state=JobState.SUCCEEDED, finished_at=1.0)
    assert scheduler.cancel(job).state is JobState.SUCCEEDED
    reconciled = scheduler._end(job, JobState.FAILED, "Ray job STOPPED: the Ray job ended STOPPED")
    assert reconciled.state is JobState.SUCCEEDED and reconciled.error is None
    stored = scheduler.store.status(job)
    assert stored.state is JobState.SUCCEEDED and stored.finished_at == 1.0


def test_one_bad_job_costs_only_itself(ray_head, where, caplog):
    """Finding 3: a job without its status (the half a failed two-write create left), one with a
    garbage status.json and one whose folder was deleted sit beside a good one. Listings, /metrics
    and the tick go on for every other job; the gone one is a 404, and forgotten."""
    uri, s3 = where
    settings = ServiceSettings(store_uri=uri, s3=s3, max_running_jobs=10)
    app = create_app(settings, launcher=ray_head, schedule=False)
    ctx = app.state.ctx
    store = ctx.store
    good = store.create(SPEC, submitted_by="default").id
    half = store.create(SPEC, submitted_by="default").id
    store.storage.delete(store.key(half, "status.json"))  # as if the second write had failed
    garbage = store.create(SPEC, submitted_by="default").id
    store.storage.write_bytes(store.key(garbage, "status.json"), b'{"state": "RUNN')
    deleted = store.create(SPEC, submitted_by="default").id
    with serving(app) as base:
        c = client(base)
        assert {j["id"] for j in c.get("/jobs").json()["items"]} == {good, half, deleted}  # not garbage
        for key in [o.key for o in store.storage.list(store.key(deleted))]:
            store.storage.delete(key)
        if (folder := store.storage.uri_for(store.key(deleted))).startswith("file://"):
            shutil.rmtree(folder.removeprefix("file://"))
        assert c.get(f"/jobs/{deleted}").status_code == 404
        listed = c.get("/jobs")
        assert listed.status_code == 200 and {j["id"] for j in listed.json()["items"]} == {good, half}
        metrics = c.get("/metrics")
        assert metrics.status_code == 200 and 'anchor_opt_jobs{state="QUEUED"} 2.0' in metrics.text
        assert c.get(f"/jobs/{half}").json()["state"] == "QUEUED"

        with caplog.at_level(logging.ERROR, logger="service.scheduler"):
            ctx.scheduler.tick()
            ctx.scheduler.tick()
        launched = [store.status(job) for job in (good, half)]
        try:
            for status in launched:
                assert status.launched_at and status.ray_submission_id
                assert ray_head.state(status.ray_submission_id) is not None  # Ray has it
            assert deleted not in [e.id for e in ctx.records.newest_first()]
            about_garbage = [
                r for r in caplog.records if r.name == "service.scheduler" and garbage in r.getMessage()
            ]
            assert len(about_garbage) == 1, [r.getMessage() for r in caplog.records]  # logged once
        finally:
            for job in (good, half):
                ctx.scheduler.cancel(job)  # the drivers stop before they train


def test_every_launch_is_its_own_ray_job_even_for_a_job_id_another_store_used(ray_head, tmp_path):
    """Finding 9: job ids derived from a tenant and a key are the same in two stores on one Ray;
    each store's launch is a Ray job of its own, recorded in the status for reconcile to ask about."""
    statuses = []
    for name in ("first", "second"):
        uri = str(tmp_path / name)
        scheduler = _scheduler(uri, StorageSettings(), ray_head)
        job = scheduler.store.create(SPEC, job_id="k0123456789abcdef", submitted_by="team-a").id
        scheduler.tick()
        status = scheduler.store.status(job)
        statuses.append(status)
        try:
            assert status.state is JobState.QUEUED and status.ray_submission_id.startswith(f"{job}-")
            assert ray_head.state(status.ray_submission_id) is not None  # submitted as that
            scheduler.tick()  # reconcile asks Ray about this launch, finds it, leaves it be
            assert scheduler.store.status(job).ray_submission_id == status.ray_submission_id
        finally:
            scheduler.cancel(job)
    assert statuses[0].ray_submission_id != statuses[1].ray_submission_id


def test_rays_reason_is_cut_down_to_the_drivers_cause():
    """Finding 10: Ray's message for a failed driver is the last 20,000 characters of its log."""
    log = "\n".join(
        f"(raylet) INFO worker.py:{i} Connecting to the Ray cluster at 10.0.0.{i}" for i in range(40)
    )
    cause = "error: s3://jobs/store/jobs/k1/status.json: write failed: AccessDenied Access Denied"
    message = (
        "Job entrypoint command failed with exit code 2, last available logs (truncated to 20,000 chars):\n"
        f"{log}\n{cause}\n(raylet) INFO shutting down\n"
    )
    reason = ray_reason("FAILED", message)
    assert reason == (
        "the driver exited with code 2: s3://jobs/store/jobs/k1/status.json: write failed: "
        "AccessDenied Access Denied"
    )
    traceback = "Traceback (most recent call last):\n  File 'x.py'\nMemoryError: rendering 25 GB"
    head = "Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):"
    crashed = ray_reason("FAILED", f"{head}\n{traceback}")
    assert crashed == "the driver exited with code 1: MemoryError: rendering 25 GB"
    assert ray_reason("STOPPED", None) == "the Ray job ended STOPPED"
    long = ray_reason("FAILED", "x" * 5000)
    assert len(long) == MAX_REASON_CHARS and long.endswith("...")


FAIR_SPEC = {"name": "fair", "optim": {"epochs": 1}, "data": {"synthetic": {"num_train": 8}},
             "resources": {"cpus_per_worker": 1}}  # fmt: skip


def _fair_app(tmp_path, ray_head, team_a: dict | None = None, **settings):
    """Two tenants (tokens `token-team-a`, `token-team-b`; team-a's entry with `team_a`'s limits),
    one job slot unless `settings` say otherwise; no scheduler thread: the tests tick it."""
    from service.auth import hash_token
    from service.settings import TokenEntry

    tokens = [
        TokenEntry(tenant="team-a", sha256=hash_token("token-team-a"), **(team_a or {})),
        TokenEntry(tenant="team-b", sha256=hash_token("token-team-b")),
    ]
    base = {"store_uri": str(tmp_path / "store"), "tokens": tokens, "max_running_jobs": 1} | settings
    return create_app(ServiceSettings(**base), launcher=ray_head, schedule=False)


def test_tenants_take_turns_and_every_waiting_job_says_why(ray_head, tmp_path):
    """Finding 7: one global FIFO let team-a's backlog starve team-b. With one slot, team-a queues
    three jobs, then team-b one: team-b's job starts second, not fourth, and each queued job says
    why it waits over the API. A submit beyond the tenant's queued-job limit is a 429."""
    app = _fair_app(tmp_path, ray_head, tenant_max_queued_jobs=3)
    ctx = app.state.ctx
    with serving(app) as base:
        a, b = client(base, "token-team-a"), client(base, "token-team-b")
        a_jobs = [a.post("/jobs", json=FAIR_SPEC).json()["id"] for _ in range(3)]
        ctx.scheduler.tick()  # a1 starts
        b_job = b.post("/jobs", json=FAIR_SPEC).json()["id"]
        ctx.scheduler.tick()  # the others wait, and say why
        owner = {j: a for j in a_jobs} | {b_job: b}
        try:
            waiting = {
                j: owner[j].get(f"/jobs/{j}").json()["progress"]["waiting"] for j in (*a_jobs[1:], b_job)
            }
            assert waiting[b_job].endswith("0 job(s) ahead of this one"), waiting
            assert waiting[a_jobs[1]].endswith("1 job(s) ahead of this one"), waiting
            assert waiting[a_jobs[2]].endswith("2 job(s) ahead of this one"), waiting
            assert all("all 1 of the service's job slots are taken" in w for w in waiting.values())
            assert a.post("/jobs", json=FAIR_SPEC).status_code == 201  # a2, a3 and this one: 3 waiting
            refused = a.post("/jobs", json=FAIR_SPEC)
            assert refused.status_code == 429 and "max_queued_jobs" in refused.json()["detail"]
            assert refused.headers["retry-after"]
            assert b.post("/jobs", json=FAIR_SPEC).status_code == 201  # team-b's own count
            started = []
            for _ in range(3):  # each time the running job ends, the slot goes to the next tenant
                running = [j for j in owner if j not in started and ctx.store.status(j).launched_at]
                assert len(running) == 1, running
                started += running
                assert owner[running[0]].post(f"/jobs/{running[0]}/cancel").status_code == 200
                ctx.scheduler.tick()
            assert started == [a_jobs[0], b_job, a_jobs[1]], started
            assert ctx.store.status(a_jobs[1]).waiting is None  # cleared when it was launched
        finally:
            for job in list(owner):
                ctx.scheduler.cancel(job)


def test_a_tenant_at_its_own_limits_waits_while_another_tenant_runs(ray_head, tmp_path):
    limits = {"embedded_gpus": 4}  # as if the machine had GPUs: the tenant's own limit is what refuses
    team_a = {"max_running_jobs": 1, "max_gpus": 0}
    app = _fair_app(tmp_path, ray_head, team_a=team_a, max_running_jobs=3, limits=limits)
    ctx = app.state.ctx
    with serving(app) as base:
        a, b = client(base, "token-team-a"), client(base, "token-team-b")
        a_jobs = [a.post("/jobs", json=FAIR_SPEC).json()["id"] for _ in range(2)]
        b_job = b.post("/jobs", json=FAIR_SPEC).json()["id"]
        gpu = a.post("/jobs", json=FAIR_SPEC | {"resources": {"cpus_per_worker": 1, "gpus_per_worker": 1}})
        assert gpu.status_code == 422, gpu.text
        assert gpu.json()["detail"].startswith("resources.gpus_per_worker: 1 worker(s) x 1 GPUs is more than")
        assert "tenant 'team-a' may use" in gpu.json()["detail"]
        try:
            ctx.scheduler.tick()
            launched = {j: ctx.store.status(j).launched_at is not None for j in [*a_jobs, b_job]}
            assert launched == {a_jobs[0]: True, a_jobs[1]: False, b_job: True}
            reason = a.get(f"/jobs/{a_jobs[1]}").json()["progress"]["waiting"]
            assert reason == "queued: tenant 'team-a' has 1 of its 1 running job(s)"
        finally:
            for job in [*a_jobs, b_job]:
                ctx.scheduler.cancel(job)


def test_ended_jobs_past_the_retention_are_deleted_and_others_kept(ray_head, where):
    """settings.job_retention_days: a tick deletes every object of a job that ended that long ago."""
    uri, settings = where
    store = JobStore(open_storage(uri, settings))
    scheduler = Scheduler(store, Records(store), ray_head, uri, max_running=100, retention_s=3600)
    old, old_writer = _running(store, uri, settings)
    old_writer.write_json("metrics/0001.json", {"epoch": 1})
    old_writer.update_status(state=JobState.SUCCEEDED, finished_at=time.time() - 7200)  # two hours ago
    recent, recent_writer = _running(store, uri, settings)
    recent_writer.update_status(state=JobState.FAILED, finished_at=time.time() - 60, error="x")
    queued = store.create(SPEC, submitted_by="team-a").id
    scheduler.cancel(queued)  # ended now: kept
    scheduler.tick()
    assert not store.exists(old) and store.storage.list(store.key(old)) == []  # nothing of it is left
    assert store.exists(recent) and store.exists(queued)
    assert old not in {e.id for e in scheduler.records.newest_first()}
    scheduler.tick()  # again: nothing more goes, nothing fails
    assert store.exists(recent) and store.exists(queued)
