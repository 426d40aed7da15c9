"""The contract holds: what a training run writes parses with the schema, with no unnamed field."""

from tests.helpers import small_config
from trainer.contract.spec import JobSpec
from trainer.contract.storage import LocalStorage
from trainer.contract.store import JobStore
from trainer.train.local_run import train


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
