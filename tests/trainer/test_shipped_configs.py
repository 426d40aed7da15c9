"""Every config in configs/ validates, says the paper's numbers it aims at, and trains one step.

The real runs need GPUs and datasets this machine lacks: each config is built as shipped (its
backbone, recipe, schedule and multi-scale settings), then pointed at the synthetic set at a small
size and without its pretrained file, and takes one optimizer step.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.trainer.train.runs import fresh
from trainer.config import BACKBONE_STRIDES
from trainer.config_files import load_config
from trainer.train.batches import epoch_batches
from trainer.train.step import train_step

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_the_paper_runs_are_shipped():
    names = {p.stem for p in CONFIGS}
    assert {"voc0712_416", "voc0712_544", "coco2017_416", "brainwash", "bccd"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_a_shipped_config_validates_and_takes_one_step_at_a_small_size(path: Path):
    cfg = load_config(path)
    if cfg.model.backbone == "darknet19":  # a paper run: its recipe and the numbers it aims at
        assert "Paper (Zhong et al., WACV 2020)" in path.read_text()
        assert cfg.optim.optimizer == "sgd" and cfg.optim.schedule == "step" and cfg.model.multiscale.enabled
        assert cfg.model.pretrained and cfg.model.pretrained.endswith("darknet19_448.conv.23")
    stride = BACKBONE_STRIDES[cfg.model.backbone]
    small = load_config(
        path,
        [
            "data.source=synthetic", "data.synthetic.num_train=4", "data.synthetic.num_val=2",
            "data.workers=0", f"model.image_size={2 * stride}", "model.pretrained=null",
            f"model.multiscale.min_size={2 * stride}", f"model.multiscale.max_size={3 * stride}",
            "optim.batch_size=2", "optim.epochs=1", "data.format=auto", "data.cache_images=false",
        ],
    )  # fmt: skip
    state, train = fresh(small)
    images, targets = next(iter(epoch_batches(state, train)))
    terms, _ = train_step(state, images, targets)
    assert state.step == 1 and math.isfinite(terms["total"])
