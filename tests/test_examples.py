"""Every job spec in examples/ is valid as shipped; the CPU ones train one step as they are (only
their size cut down), the GPU ones are checked for what they need (GPUs, S3 data, pretrained weights)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.trainer.train.runs import fresh
from trainer.config_errors import schedule_warnings
from trainer.config_files import load_config
from trainer.contract.spec import JobSpec
from trainer.train.batches import epoch_batches
from trainer.train.step import train_step

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
SHARED = REPO.parent / "shared" / "data"


def test_the_examples_cover_cpu_and_gpu_jobs():
    assert {p.stem for p in EXAMPLES} >= {"synthetic-cpu", "bccd-cpu", "voc0712-gpu", "coco-gpu"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_an_example_is_a_valid_job_with_a_schedule_that_ends_its_warm_up(path: Path):
    spec = load_config(path, model=JobSpec)
    assert spec.name and f"anchor-opt submit examples/{path.name}" in path.read_text()
    assert schedule_warnings(spec, workers=spec.resources.workers) == []
    if path.stem.endswith("-gpu"):
        assert spec.resources.gpus_per_worker >= 1 and spec.data.source.startswith("s3://")
        assert spec.model.pretrained and spec.model.backbone == "darknet19"


@pytest.mark.parametrize("path", [p for p in EXAMPLES if p.stem.endswith("-cpu")], ids=lambda p: p.stem)
def test_a_cpu_example_trains_one_step_as_it_is(path: Path, monkeypatch):
    spec = load_config(path, model=JobSpec)
    if not spec.data.is_synthetic:
        if not (SHARED / "bccd").is_dir():
            pytest.skip(f"{SHARED / 'bccd'} is absent (../shared/data holds the real photos)")
        monkeypatch.chdir(REPO)  # its source is relative to the repository root, as the file says
    small = ["optim.epochs=1", "data.cache_images=false"]
    small += ["data.synthetic.num_train=64", "data.synthetic.num_val=8"] if spec.data.is_synthetic else []
    cfg = load_config(path, small, model=JobSpec)
    state, train = fresh(cfg)
    images, targets = next(iter(epoch_batches(state, train)))
    terms, _ = train_step(state, images, targets)
    assert state.step == 1 and math.isfinite(terms["total"])
