from pathlib import Path

import pytest
import yaml

from trainer.config import TrainConfig, apply_overrides, load_config

CONFIGS = Path(__file__).parents[2] / "trainer" / "configs"


def test_defaults_are_a_complete_valid_config():
    cfg = TrainConfig()
    assert cfg.anchors.num == 5 and cfg.tricks.soft_assign.enabled and cfg.tricks.bn_no_shift


def test_shipped_configs_are_valid():
    for path in CONFIGS.glob("*.yaml"):
        load_config(path)


def test_overrides_parse_yaml_values_and_nest():
    sets = ["anchors.num=3", "tricks.soft_assign.temperature=0.5", "anchors.values=[[1, 2], [3, 4], [5, 6]]"]
    data = apply_overrides({"anchors": {"num": 5}}, [*sets, "anchors.init=list"])
    cfg = TrainConfig.model_validate(data)
    assert cfg.anchors.num == 3 and cfg.tricks.soft_assign.temperature == 0.5
    assert cfg.anchors.values == [(1, 2), (3, 4), (5, 6)]


def test_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"anchors": {"num": 0}}))
    with pytest.raises(ValueError, match=r"job.yaml(.|\n)*anchors.num"):
        load_config(path)
    with pytest.raises(ValueError, match="anchors.values has 2 pairs"):
        load_config(None, ["anchors.init=list", "anchors.values=[[1, 2], [3, 4]]"])
    with pytest.raises(ValueError, match="min_objects"):
        load_config(None, ["data.synthetic.min_objects=5", "data.synthetic.max_objects=2"])
    with pytest.raises(ValueError, match="seed"):
        load_config(None, ["seed.x=1"])
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(path)


@pytest.mark.parametrize("override", ["optim.lr=.inf", "optim.grad_clip=.nan", "anchors.values=[[.inf, 4]]"])
def test_infinite_and_nan_numbers_are_refused(override):
    with pytest.raises(ValueError, match=override.split("=")[0].split(".")[0]):
        load_config(None, ["anchors.init=list", "anchors.num=1", override])


def test_the_file_goes_through_the_safe_loader(tmp_path):
    """Finding 13 of issue 14: duplicate keys were last-wins, a folder a traceback (trainer.safe_yaml)."""
    path = tmp_path / "job.yaml"
    path.write_text("optim:\n  epochs: 1\nanchors:\n  num: 3\noptim:\n  epochs: 9\n")
    with pytest.raises(ValueError, match=r"job.yaml, line 5: duplicate key 'optim' \(first given on line 1"):
        load_config(path)
    with pytest.raises(ValueError, match="is a folder, not a YAML file"):
        load_config(tmp_path)
    with pytest.raises(ValueError, match="nope.yaml: no such file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="--set 'anchors.values=.*recursive alias"):
        load_config(None, ["anchors.values=&a [*a]"])
