import json

import pytest

from trainer.jobs.schema import JobStatus
from trainer.jobs.spec import JobSpec, JobState
from trainer.jobs.store import JobExists, JobStore, UnknownJob, new_job_id
from trainer.storage import LocalStorage, open_storage


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return JobStore(LocalStorage(tmp_path / "root"))
    bucket, settings = request.getfixturevalue("s3_bucket")
    return JobStore(open_storage(f"s3://{bucket}/anchor-opt", settings))


def _snapshot(step: int) -> dict:
    return {"step": step, "epoch": 0, "total_steps": 100, "phase": "warmup", "image_size": 128, "stride": 16,
            "anchors": [[10.0, 12.0]], "anchors_cells": [[0.625, 0.75]],
            "fit": {"mean_best_iou": 0.5, "bpr": 1.0, "anchors_per_target": 1.0}, "time": 1.0}  # fmt: skip


def test_create_records_the_spec_and_a_queued_status(store):
    spec = JobSpec.from_mapping({"name": "first", "resources": {"workers": 2}})
    record = store.create(spec, submitted_by="team-a", idempotency_key="k1")
    assert store.job_ids() == [record.id] and store.exists(record.id)
    again = store.record(record.id)
    assert again.spec == spec and again.submitted_by == "team-a" and again.idempotency_key == "k1"
    status = store.status(record.id)
    assert status.state is JobState.QUEUED and status.step == 0
    assert store.result(record.id) is None and store.snapshots(record.id) == []


def test_job_ids_are_the_job_folders(store):
    ids = [store.create(JobSpec(name=n), job_id=f"job-{n}").id for n in ("b", "a")]
    store.storage.write_bytes("jobs/NOT_AN_ID/job.json", b"{}")  # not a name a job can have
    store.storage.write_bytes("jobs/job-c/status.json", b"{}")  # a folder without its record (yet)
    assert store.job_ids() == sorted(ids) + ["job-c"]
    with pytest.raises(UnknownJob):
        store.record("job-c")


def test_a_job_id_is_created_once(store):
    first = store.create(JobSpec(name="one"), job_id="job-1")
    store.write_status("job-1", JobStatus(state=JobState.RUNNING, step=5, updated_at=2.0))
    with pytest.raises(JobExists, match="job-1 already exists"):
        store.create(JobSpec(name="two"), job_id="job-1")
    assert store.record("job-1") == first  # untouched: spec and submit time
    assert store.status("job-1").state is JobState.RUNNING


def test_snapshots_in_step_order_and_since_a_step(store):
    job = store.create(JobSpec()).id
    for step in (0, 25, 50, 75):
        store.storage.write_bytes(
            store.key(job, f"anchors/{step:08d}.json"), json.dumps(_snapshot(step)).encode()
        )
    assert [s.step for s in store.snapshots(job)] == [0, 25, 50, 75]
    assert [s.step for s in store.snapshots(job, since_step=25)] == [50, 75]
    assert store.snapshots(job, since_step=75) == []
    assert store.latest_snapshot(job).step == 75


def test_unknown_jobs_and_bad_ids(store):
    with pytest.raises(UnknownJob, match="nope-1"):
        store.status("nope-1")
    with pytest.raises(UnknownJob):
        store.result("nope-1")
    for bad in ("../etc", "UPPER", "a", "with/slash", "x" * 64):
        with pytest.raises(ValueError, match="job id"):
            store.key(bad)


def test_generated_ids_sort_by_time_and_are_valid():
    ids = [new_job_id() for _ in range(20)]
    assert len(set(ids)) == 20
    JobStore(LocalStorage("/tmp")).key(ids[0])  # passes the id check
