"""The contract holds: what a training run writes parses with the schema, with no unnamed field."""

from trainer.jobs.spec import JobSpec
from trainer.jobs.store import JobStore
from trainer.run import train
from trainer.storage import LocalStorage

from ..conftest import small_config


def test_a_runs_outputs_parse_with_the_schema(tmp_path):
    store = JobStore(LocalStorage(tmp_path))
    job = store.create(JobSpec()).id
    result = train(small_config("optim.epochs=1"), tmp_path / "jobs" / job)

    snaps = store.snapshots(job)
    assert snaps[0].step == 0 and snaps[-1].step == result["steps"]
    metrics = store.metrics(job)
    assert [m.epoch for m in metrics] == [1]
    parsed = store.result(job)
    assert parsed.anchors.final == result["anchors"]["final"]
    for doc in [*snaps, *metrics, parsed]:
        assert not doc.model_extra, f"{type(doc).__name__} misses fields {sorted(doc.model_extra)}"
        for value in doc.__dict__.values():
            assert not getattr(value, "model_extra", None)
