from pathlib import Path

import pytest
import yaml

from trainer.config import TrainConfig
from trainer.config_errors import schedule_warnings
from trainer.config_files import apply_overrides, load_config

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


def _unbounded(schema: dict, defs: dict, path: str = "") -> list[str]:
    """Paths of the JSON schema's numbers without a maximum, free strings without a maxLength and
    arrays without maxItems: what a request could make as large as it likes."""
    if "$ref" in schema:
        return _unbounded(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, path)
    found = []
    for option in schema.get("anyOf", []):
        found += _unbounded(option, defs, path)
    kind = schema.get("type")
    if kind in ("integer", "number") and not {"maximum", "exclusiveMaximum", "enum"} & schema.keys():
        found.append(path)
    if kind == "string" and "enum" not in schema and "maxLength" not in schema:
        found.append(path)
    if kind == "array":
        if "maxItems" not in schema:
            found.append(path)
        for i, item in enumerate(schema.get("prefixItems", [])):
            found += _unbounded(item, defs, f"{path}.{i}")
        if "items" in schema:
            found += _unbounded(schema["items"], defs, f"{path}.*")
    for name, prop in schema.get("properties", {}).items():
        found += _unbounded(prop, defs, f"{path}.{name}" if path else name)
    return found


def test_every_field_is_bounded():
    """Every count, size, string and list a config (and so a request) can set has an upper bound."""
    schema = TrainConfig.model_json_schema()
    assert _unbounded(schema, schema.get("$defs", {})) == []


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("data.source=" + "x" * 2049, "data.source"),
        ("data.train_split=" + "x" * 513, "data.train_split"),
        ("data.synthetic.num_train=100001", "data.synthetic.num_train"),
        ("data.synthetic.max_objects=101", "data.synthetic.max_objects"),
        ("data.synthetic.shapes=[" + ", ".join(["{w: 8, h: 8}"] * 65) + "]", "data.synthetic.shapes"),
        ("anchors.values=[" + ", ".join(["[8, 8]"] * 129) + "]", "anchors.values"),
        ("anchors.values=[[8, 8193]]", "anchors.values.0.1"),
        ("model.image_size=2080", "model.image_size"),
        ("optim.batch_size=1025", "optim.batch_size"),
        ("optim.epochs=10001", "optim.epochs"),
        ("optim.lr=11", "optim.lr"),
        ("tricks.warmup_steps=10000001", "tricks.warmup_steps"),
        ("eval.max_detections=1001", "eval.max_detections"),
    ],
)
def test_values_beyond_the_caps_are_refused_naming_the_field(override, field):
    with pytest.raises(ValueError, match=rf"(^|\n)--set .*: {field.replace('.', '[.]')}: "):
        load_config(None, ["anchors.init=list", "anchors.num=1", "anchors.values=[[8, 8]]", override])


def test_the_caps_fit_real_local_runs():
    """`anchor-opt train` has no service limits: the caps must leave room for COCO-sized work."""
    coco = ["model.backbone=darknet19", "model.image_size=608", "optim.batch_size=64", "optim.epochs=300"]
    cfg = load_config(None, [*coco, "data.workers=16", "tricks.warmup_steps=100000"])
    assert cfg.model.image_size == 608 and cfg.optim.epochs == 300


@pytest.mark.parametrize("field", ["seed", "anchors.seed"])
@pytest.mark.parametrize("seed", [-1, 2**32, 2**63, 2**64])
def test_seeds_outside_what_every_generator_takes_are_refused(field, seed):
    """-1 and 2**64 used to be accepted and to fail at run time (SeedSequence, torch's generator)."""
    with pytest.raises(ValueError, match=rf"(^|\n)--set .*: {field.replace('.', '[.]')}: "):
        load_config(None, [f"{field}={seed}"])


def test_a_run_at_the_largest_seed_trains(tmp_path):
    from tests.helpers import small_config
    from trainer.train.local_run import train

    top = 2**32 - 1
    cfg = small_config(f"seed={top}", f"anchors.seed={top}", "optim.epochs=1", "eval.every_epochs=0")
    result = train(cfg, str(tmp_path / "run"))
    assert result["steps"] == 8


@pytest.mark.parametrize(
    ("override", "field", "message"),
    [
        ("optim.epochs=true", "optim.epochs", "expected a number, got the boolean true"),
        ("optim.lr=false", "optim.lr", "expected a number, got the boolean false"),
        ("seed=true", "seed", "got the boolean true"),
        ("optim.lr_step_epochs=[5, true]", "optim.lr_step_epochs", "expected numbers, found a boolean"),
        ("optim.epochs=2.5", "optim.epochs", "fractional part"),
    ],
)
def test_booleans_and_fractions_are_no_numbers(override, field, message):
    """Where pydantic would coerce (true -> 1) a surprising value, it is refused naming the field."""
    with pytest.raises(ValueError, match=rf"--set .*: {field.replace('.', '[.]')}: .*{message}"):
        load_config(None, [override])
    assert load_config(None, ["optim.epochs=3.0", "anchors.learn=false"]).optim.epochs == 3  # whole: fine


def test_schedule_warnings_say_when_a_warm_up_outlasts_the_run():
    cfg = load_config(None, ["optim.epochs=4", "optim.batch_size=32"])  # 2000 // 32 x 4 = 248 steps
    (tricks,) = schedule_warnings(cfg)
    assert "tricks.warmup_steps=300" in tricks and "248 steps (2000 images // 32 a step x 4 epochs)" in tricks
    assert schedule_warnings(cfg, num_train=4000) == []  # 496 steps
    assert len(schedule_warnings(cfg, workers=4)) == 1  # 60 steps of 4 x 32
    assert (
        "optim.lr_warmup_steps=50 is not shorter than the run: the run has 40 steps"
        in schedule_warnings(cfg, 320)[1]
    )
    real = load_config(None, ["data.source=/data/voc", "optim.epochs=1"])
    assert schedule_warnings(real) == []  # unknown until the set is read (the run logs it then)


def test_levels_are_ascending_strides_with_three_anchors_each_unless_told():
    cfg = load_config(None, ["model.levels=[8, 16, 32]", "model.image_size=416"])
    assert cfg.strides == [8, 16, 32] and cfg.anchors.num == 3 and cfg.total_anchors == 9
    assert load_config(None, ["model.levels=[16, 32]", "anchors.num=4"]).total_anchors == 8
    one = load_config(None, [])
    assert one.model.levels is None and one.strides == [16] and one.total_anchors == one.anchors.num == 5
    with pytest.raises(
        ValueError, match=r"model.levels=\[32, 8\] must be distinct strides in ascending order"
    ):
        load_config(None, ["model.levels=[32, 8]"])
    with pytest.raises(ValueError, match="model.levels"):
        load_config(None, ["model.levels=[4, 8]"])  # no backbone has a stride-4 map
    with pytest.raises(
        ValueError, match=r"image_size=144 must be a multiple of the coarsest level's stride \(32\)"
    ):
        load_config(None, ["model.levels=[8, 16, 32]", "model.image_size=144"])
