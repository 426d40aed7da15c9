from __future__ import annotations

import pytest

from trainer.config import TrainConfig, apply_overrides


def small_config(*overrides: str) -> TrainConfig:
    """A run small enough for a unit test: 64 px input, 64 images, batches of 8, 16 steps."""
    base = {
        "data": {"synthetic": {"num_train": 64, "num_val": 16}},
        "model": {"image_size": 64, "width": 0.5},
        "optim": {"batch_size": 8, "epochs": 2, "lr_warmup_steps": 2},
        "tricks": {"warmup_steps": 6},
        "output": {"snapshot_every": 4},
    }
    return TrainConfig.model_validate(apply_overrides(base, list(overrides)))


@pytest.fixture
def small_cfg() -> TrainConfig:
    return small_config()
