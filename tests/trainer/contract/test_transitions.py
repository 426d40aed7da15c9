"""The one status transition (trainer.contract.transitions) on both backends: a change is applied to
what is stored when it lands, never to a stale read, and a status that never settles is an error."""

from __future__ import annotations

import pytest

from trainer.contract import transitions
from trainer.contract.documents import JobStatus
from trainer.contract.spec import JobState
from trainer.contract.storage import LocalStorage, StorageError, open_storage
from trainer.contract.transitions import transition

KEY = "jobs/job-1/status.json"


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "root")
    bucket, settings = request.getfixturevalue("s3_bucket")
    return open_storage(f"s3://{bucket}/anchor-opt", settings)


def _write(storage, **fields) -> None:
    storage.write_bytes(KEY, JobStatus(updated_at=1.0, **fields).model_dump_json().encode())


def test_a_change_refused_is_applied_again_to_what_landed_meanwhile(storage):
    _write(storage, state=JobState.RUNNING, step=1)
    seen = []

    def progress(status: JobStatus) -> dict:
        seen.append(status.step)
        if len(seen) < 3:  # another writer lands between this read and this write, twice
            _write(storage, state=JobState.RUNNING, step=10 * len(seen), epoch=len(seen))
        return {"eta_s": 5.0}

    stored = transition(storage, KEY, progress)
    assert seen == [1, 10, 20]  # each attempt read what the other writer had written
    assert (stored.step, stored.epoch, stored.eta_s) == (20, 2, 5.0)
    assert JobStatus.model_validate_json(storage.read_bytes(KEY)) == stored


def test_a_cancel_landing_meanwhile_wins(storage):
    _write(storage, state=JobState.RUNNING, step=1)

    def progress(status: JobStatus) -> dict:
        if status.state is JobState.RUNNING:
            _write(storage, state=JobState.CANCELLED, error="cancelled by request")
        return {"step": status.step + 1}

    stored = transition(storage, KEY, progress)
    assert stored.state is JobState.CANCELLED and stored.step == 0


def test_a_status_that_never_settles_is_an_error(storage, monkeypatch):
    monkeypatch.setattr(transitions, "GIVE_UP_S", 0.2)
    _write(storage, state=JobState.RUNNING)

    def always_overtaken(status: JobStatus) -> dict:
        _write(storage, state=JobState.RUNNING, step=status.step + 1)
        return {"eta_s": 1.0}

    with pytest.raises(StorageError, match=r"kept changing for 0 s \(\d+ conditional writes refused\)"):
        transition(storage, KEY, always_overtaken)
