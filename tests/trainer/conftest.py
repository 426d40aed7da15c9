"""Fixtures of the trainer tests: a small config, a real local Ray for the session."""

from __future__ import annotations

import pytest

from tests.helpers import small_config
from trainer.config import TrainConfig


@pytest.fixture
def small_cfg() -> TrainConfig:
    return small_config()


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray with 2 CPUs for the whole session, shut down at its end.

    Its temp folder is short (Ray puts Unix sockets under it; a long pytest tmp path breaks them).
    """
    import shutil
    import tempfile

    from trainer.train.ray_run import ensure_ray, ray

    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    assert ensure_ray(num_cpus=2, temp_dir=temp)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
