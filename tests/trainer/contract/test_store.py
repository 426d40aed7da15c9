import json

import pytest

from trainer.contract.documents import JobStatus
from trainer.contract.layout import JOB_KEY
from trainer.contract.spec import JobSpec, JobState
from trainer.contract.storage import LocalStorage, open_storage
from trainer.contract.store import (
    IdempotencyConflict,
    JobExists,
    JobStore,
    UnknownJob,
    idempotent_job_id,
    new_job_id,
)


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


def test_create_records_the_spec_alone_and_the_job_is_queued(store):
    """One object is the whole job: no half of one can be left by a failed second write."""
    spec = JobSpec.from_mapping({"name": "first", "resources": {"workers": 2}})
    record = store.create(spec, submitted_by="team-a", idempotency_key="k1")
    assert store.job_ids() == [record.id] and store.exists(record.id)
    assert [o.key for o in store.storage.list()] == [store.key(record.id, JOB_KEY)]
    again = store.record(record.id)
    assert again.spec == spec and again.submitted_by == "team-a" and again.idempotency_key == "k1"
    status = store.status(record.id)
    assert status.state is JobState.QUEUED and status.step == 0 and status.updated_at == record.submitted_at
    assert store.result(record.id) is None and store.snapshots(record.id) == []


def test_status_changes_are_compare_and_swaps_and_an_end_is_final(store):
    job = store.create(JobSpec(name="one"), job_id="job-1").id
    launched = store.update_status(job, {"launched_at": 5.0})
    assert launched.state is JobState.QUEUED and launched.launched_at == 5.0
    assert store.status(job) == launched
    # A change may depend on what it reads; None (or {}) writes nothing.
    same = store.update_status(job, lambda s: None if s.launched_at else {"launched_at": 9.0})
    assert same == launched and store.status(job).updated_at == launched.updated_at
    store.update_status(job, {"state": JobState.RUNNING, "step": 3})
    ended = store.update_status(job, {"state": JobState.CANCELLED, "error": "cancelled by request"})
    late = store.update_status(job, {"state": JobState.RUNNING, "step": 4})
    assert late == ended and late.state is JobState.CANCELLED and late.step == 3
    failed = store.update_status(job, {"state": JobState.FAILED, "error": "Ray job STOPPED"})
    assert failed == ended and store.status(job) == ended
    resumed = store.update_status(job, {"state": JobState.RUNNING, "error": None}, reopen=True)
    assert resumed.state is JobState.RUNNING and store.status(job) == resumed
    with pytest.raises(ValueError, match="state"):  # validated against the schema before writing
        store.update_status(job, {"state": "DANCING"})


def test_a_deleted_job_gets_no_status_written(store):
    job = store.create(JobSpec(name="gone")).id
    store.storage.delete(store.key(job, JOB_KEY))
    with pytest.raises(UnknownJob):
        store.status(job)
    with pytest.raises(UnknownJob):
        store.update_status(job, {"state": JobState.CANCELLED})
    assert store.storage.list() == []


def test_a_create_whose_answer_was_lost_finds_its_own_record(s3_bucket):
    """S3 took the create but its answer was lost; botocore sends it again and S3 refuses the
    repeat (412): that is this very create, not another job's id."""
    bucket, settings = s3_bucket
    store = JobStore(open_storage(f"s3://{bucket}/anchor-opt", settings))
    sent = []

    def lose_the_first_answer(attempts, **kwargs):
        sent.append(attempts)
        return 0 if attempts == 1 else None  # "retry now" after the first, successful, PUT

    store.storage.client.meta.events.register("needs-retry.s3.PutObject", lose_the_first_answer)
    record = store.create(JobSpec(name="once"), job_id="job-once")
    assert len(sent) == 2 and store.record("job-once") == record
    with pytest.raises(JobExists):  # another create of the id is still a clash
        store.create(JobSpec(name="twice"), job_id="job-once")


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


def test_a_submit_with_a_key_is_one_job_per_tenant_and_key(store):
    spec = JobSpec()
    first, replayed = store.submit(spec, "team-a", idempotency_key="nightly-42")
    assert not replayed and first.id == idempotent_job_id("team-a", "nightly-42") and first.id.startswith("k")
    again, replayed = store.submit(spec, "team-a", idempotency_key="nightly-42")
    assert replayed and again == first and store.job_ids() == [first.id]
    other, replayed = store.submit(spec, "team-b", idempotency_key="nightly-42")  # another tenant's key
    assert not replayed and other.id != first.id
    with pytest.raises(IdempotencyConflict, match="already used with a different job spec"):
        store.submit(JobSpec.model_validate({"name": "else"}), "team-a", idempotency_key="nightly-42")
    assert store.record(first.id) == first  # the conflict changed nothing
    unkeyed, replayed = store.submit(spec, "team-a")
    assert not replayed and unkeyed.idempotency_key is None and unkeyed.id != first.id


@pytest.mark.parametrize("key", ["", "has space", "x" * 201, "tab\t", "é"])
def test_an_idempotency_key_outside_printable_ascii_is_refused_naming_it(store, key):
    with pytest.raises(ValueError, match="Idempotency-Key"):
        store.submit(JobSpec(), "team-a", idempotency_key=key)
    assert store.job_ids() == []


def test_a_deleted_job_is_gone_whole_job_json_first(tmp_path):
    from trainer.contract.spec import JobSpec
    from trainer.contract.storage import LocalStorage
    from trainer.contract.store import JobStore, UnknownJob

    store = JobStore(LocalStorage(tmp_path))
    job = store.create(JobSpec(), submitted_by="t").id
    store.storage.write_bytes(store.key(job, "anchors/00000025.json"), b"{}")
    other = store.create(JobSpec(), submitted_by="t").id
    assert store.delete(job) == 2  # job.json and the snapshot (no status.json was written)
    assert store.storage.list(store.key(job)) == [] and store.exists(other)
    with pytest.raises(UnknownJob):
        store.record(job)
