"""What a job asks for: the training configuration (every section of `TrainConfig`) and resources.

A job spec is a train config with two more sections, so `anchor-opt train job.yaml` and a job
submitted over REST run the same settings:

    data:      {source: s3://datasets/voc/VOCdevkit, format: voc, train_split: VOC2007/trainval, ...}
    anchors:   {num: 5, init: identical}
    tricks:    {warmup_steps: 300, soft_assign: {temperature: 0.1}, ...}
    model:     {backbone: darknet19, image_size: 416}
    optim:     {epochs: 100, batch_size: 64}
    resources: {workers: 4, gpus_per_worker: 1, cpus_per_worker: 8}
    name:      voc07-identical

Torch-free: the service validates specs with it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from trainer.config import TrainConfig
from trainer.config_base import _Section


class JobState(StrEnum):
    """QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


# How long a started job waits for Ray to place its workers before it ends FAILED: the service
# passes its `limits.resource_wait_s` to the driver in this variable (trainer.train.ray_resources reads it).
RESOURCE_WAIT_ENV = "ANCHOR_OPT_RESOURCE_WAIT_S"
DEFAULT_RESOURCE_WAIT_S = 1800.0  # an autoscaler brings up a GPU node in minutes, not half an hour

# A worker gets at least one CPU. Each rank runs the model (on CPU, or feeding a GPU) with
# torch.set_num_threads(max(1, int(cpus_per_worker))): it uses a core whatever it asked for, so a
# fraction only lets Ray pack several busy ranks onto one core (`workers: 256, cpus_per_worker:
# 0.001` fitted on a quarter of a core), each all-reduce then waiting on the slowest.
MIN_CPUS_PER_WORKER = 1


class Resources(_Section):
    """What the job's Ray Train workers get. Each worker is one DDP rank."""

    workers: int = Field(default=1, ge=1, le=256, description="Ray Train workers, one DDP rank each.")
    gpus_per_worker: float = Field(
        default=0,
        ge=0,
        le=16,
        description="GPUs each worker gets. 0: CPU training with gloo; 1 or more: NCCL and bf16 autocast.",
    )
    cpus_per_worker: float = Field(
        default=2,
        ge=MIN_CPUS_PER_WORKER,
        le=256,
        description="CPUs each worker gets, for data loading and, on CPU, the model (its torch threads).",
    )
    max_failures: int = Field(
        default=2,
        ge=0,
        le=100,
        description="Times Ray Train restarts the workers from the last checkpoint before the job ends "
        "FAILED (0: the first failure ends it).",
    )


class JobSpec(TrainConfig):
    """A training config (every `TrainConfig` section, same defaults) plus name and resources."""

    name: str | None = Field(
        default=None, max_length=100, description="A label for people; the job id identifies the job."
    )
    resources: Resources = Field(
        default_factory=Resources, description="What the job's Ray Train workers get."
    )

    def train_config(self) -> TrainConfig:
        """The training settings alone (what a run's checkpoint is compared against)."""
        return TrainConfig.model_validate(self.model_dump(exclude={"name", "resources"}))

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None, where: str = "job spec") -> JobSpec:
        """Validates a parsed YAML/JSON mapping; ValueError naming `where` and every bad field."""
        try:
            return cls.model_validate(data or {})
        except Exception as exc:  # pydantic.ValidationError lists each field with its path
            raise ValueError(f"{where}: invalid job spec:\n{exc}") from None
