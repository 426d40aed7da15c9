"""The optimiser settings of a run (`optim:`): the optimiser, learning rate and its warm-up and
schedule, batch, epochs, and how layers loaded from pretrained weights learn. trainer.config
assembles them into `TrainConfig`. Importable without torch.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from trainer.config_base import MAX_EPOCHS, MAX_STEPS, _Section


class OptimConfig(_Section):
    # AdamW trains the tiny model fastest on CPU.
    optimizer: Literal["adamw", "sgd"] = Field(
        default="adamw", description="The network's optimizer: adamw (AdamW) or sgd (SGD with momentum)."
    )
    lr: float = Field(
        default=2e-3,
        gt=0,
        le=10,
        description="The network's peak learning rate (the anchors have `anchors.lr`).",
    )
    momentum: float = Field(default=0.9, ge=0, lt=1, description="SGD's momentum, or AdamW's beta1.")
    weight_decay: float = Field(
        default=5e-4,
        ge=0,
        le=1,
        description="Weight decay, on conv weights only: never on the anchors, batch norm or biases.",
    )
    batch_size: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="Images per batch, per worker when training with several workers.",
    )
    epochs: int = Field(default=10, ge=1, le=MAX_EPOCHS, description="Passes over the training images.")
    lr_warmup_steps: int = Field(
        default=50,
        ge=0,
        le=MAX_STEPS,
        description="The learning rate ramps up from 0 over these first steps as "
        "`(step / lr_warmup_steps) ** lr_warmup_power` (0: no ramp).",
    )
    lr_warmup_power: float = Field(
        default=1.0,
        ge=0.1,
        le=10,
        description="Power of the learning-rate ramp: 1 is linear, darknet's burn-in uses 4.",
    )
    schedule: Literal["cosine", "step"] = Field(
        default="cosine",
        description="The learning rate after the ramp. cosine: down to 5 % of `lr` at the end; step: times "
        "`lr_step_factor` at each epoch of `lr_step_epochs` (darknet's steps and scales).",
    )
    lr_step_epochs: list[Annotated[int, Field(ge=1, le=MAX_EPOCHS)]] = Field(
        default_factory=list,
        max_length=32,
        description="Increasing epochs at which `schedule: step` multiplies the learning rate by "
        "`lr_step_factor`.",
    )
    lr_step_factor: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="What `schedule: step` multiplies the learning rate by at each step.",
    )
    pretrained_lr_factor: float = Field(
        default=1.0,
        ge=0,
        le=10,
        description="Layers loaded from `model.pretrained` learn at `lr` times this (0: frozen for the "
        "whole run).",
    )
    freeze_pretrained_epochs: int = Field(
        default=0,
        ge=0,
        le=MAX_EPOCHS,
        description="Layers loaded from `model.pretrained` stay frozen for these first epochs while the new "
        "head learns (0: never frozen).",
    )
    grad_clip: float = Field(
        default=10.0, gt=0, le=1e6, description="Gradients are clipped to this total norm at each step."
    )

    @model_validator(mode="after")
    def _check_steps(self) -> OptimConfig:
        if self.lr_step_epochs != sorted(set(self.lr_step_epochs)):
            raise ValueError("optim.lr_step_epochs must be increasing epochs without repeats")
        if self.schedule == "step" and not self.lr_step_epochs:
            raise ValueError("optim.schedule 'step' needs optim.lr_step_epochs (e.g. [60, 90])")
        return self
