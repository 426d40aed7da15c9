import pytest

from trainer.config import TrainConfig
from trainer.contract.spec import JobSpec, JobState, Resources


def test_a_spec_is_a_train_config_plus_resources():
    spec = JobSpec.from_mapping(
        {"name": "voc", "anchors": {"num": 3, "init": "identical"}, "resources": {"workers": 2}}
    )
    cfg = spec.train_config()
    assert type(cfg) is TrainConfig and cfg.anchors.num == 3 and cfg.anchors.init == "identical"
    assert "resources" not in cfg.model_dump() and spec.resources == Resources(workers=2)
    assert JobSpec().train_config() == TrainConfig()


@pytest.mark.parametrize(
    "data, field",
    [
        ({"resources": {"workers": 0}}, "resources.workers"),
        ({"resources": {"gpus": 1}}, "resources.gpus"),
        ({"resources": {"workers": 256, "cpus_per_worker": 0.001}}, "resources.cpus_per_worker"),  # >= 1 CPU
        ({"anchors": {"num": -1}}, "anchors.num"),
        ({"model": {"image_size": 100}}, "multiple of the tiny stride"),
        ({"name": "x" * 101}, "name"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_bad_specs_name_the_field(data, field):
    with pytest.raises(ValueError, match="invalid job spec") as err:
        JobSpec.from_mapping(data, "request body")
    assert field in str(err.value) and str(err.value).startswith("request body")


def test_every_spec_field_is_bounded():
    from ..test_config import _unbounded

    schema = JobSpec.model_json_schema()
    assert _unbounded(schema, schema.get("$defs", {})) == []


def test_terminal_states():
    assert {s for s in JobState if s.terminal} == {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
