"""trainer.config_errors: a bad setting is one line naming its source, its path and the fix."""

from __future__ import annotations

import pytest

from trainer.config_errors import setting_paths, suggestions
from trainer.config_files import load_config
from trainer.contract.spec import JobSpec


def error(overrides: list[str], path=None, model=None) -> str:
    with pytest.raises(ValueError) as caught:
        load_config(path, overrides, **({"model": model} if model else {}))
    return str(caught.value)


def test_a_misspelt_key_names_its_set_and_the_setting_meant():
    assert (
        error(["optim.epoch=3"])
        == "--set optim.epoch=3: optim.epoch: no such setting; did you mean optim.epochs?"
    )
    assert "did you mean optim.batch_size?" in error(["optim.bach_size=2"])
    assert "did you mean data.augment.hflip?" in error(["hflip=0.5"])  # the right key in its section
    assert error(["optim.zzz=1"]) == "--set optim.zzz=1: optim.zzz: no such setting"


def test_a_bad_value_is_one_line_with_what_was_given_and_no_pydantic_dump():
    text = error(["anchors.num=0"])
    assert text == "--set anchors.num=0: anchors.num: Input should be greater than or equal to 1 (got 0)"
    assert "errors.pydantic.dev" not in text and "type=" not in text


def test_each_problem_names_its_own_source_a_set_or_the_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("optim:\n  epochz: 3\n")
    assert error(["anchors.num=0"], path).splitlines() == [  # in the model's field order
        "--set anchors.num=0: anchors.num: Input should be greater than or equal to 1 (got 0)",
        f"{path}: optim.epochz: no such setting; did you mean optim.epochs?",
    ]
    assert error(["optim.epochs=0"]).startswith("--set optim.epochs=0: optim.epochs: ")
    assert error([], tmp_path / "job.yaml").startswith(f"{path}: ")  # no --set: the file


def test_job_specs_get_the_same_lines():
    assert "did you mean resources.workers?" in error(["resources.worker=2"], model=JobSpec)


def test_the_settings_and_suggestions_come_from_the_models():
    paths = setting_paths(JobSpec)
    assert {
        "optim.epochs",
        "data.augment.hflip",
        "resources.gpus_per_worker",
        "model.multiscale.max_size",
    } <= set(paths)
    assert suggestions("tricks.warmup_step", JobSpec) == ["tricks.warmup_steps"]
