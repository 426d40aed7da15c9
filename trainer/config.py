"""Every training setting in one config object, with its default and the reason for it.

Importable without torch: the job contract (service side) reuses these models. Units: sizes are
pixels at the model's input size unless a name says otherwise; steps are optimizer steps.

The paper (Zhong et al., WACV 2020) does not give the temperature T, the clustering weight lambda,
the warm-up length, the distance used by the soft assignment, or where the shift-free batch norm
sits. Those defaults are ours, chosen by the measurements in `bench/` (docs/method.md).

The network and anchor sections live in trainer.config_model, the data and optimiser sections in
trainer.config_data and trainer.config_optim, what every section shares in trainer.config_base.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from trainer.config_base import MAX_EPOCHS, MAX_STEPS, MAX_WEIGHT, SEED, _Section
from trainer.config_data import DataConfig
from trainer.config_model import (  # noqa: F401  (BACKBONE_STRIDES, LEVEL_STRIDES: trainer.config's names)
    ANCHORS_PER_LEVEL,
    BACKBONE_STRIDES,
    LEVEL_STRIDES,
    AnchorConfig,
    ModelConfig,
    MultiScaleConfig,
)
from trainer.config_optim import OptimConfig


class SoftAssignConfig(_Section):
    """Trick 1 (eq. 10): during warm-up a box is shared by all anchors of its cell."""

    enabled: bool = Field(
        default=True,
        description="Share each box among all anchors of its cell during warm-up (eq. 10); false: "
        "YOLOv2's hard assignment throughout.",
    )
    # With dist=iou the distances lie in [0, 1]; 0.1 lets a 0.1 better IoU count e times more.
    # Measured from an identical init: 0.05 -> error 0.146, 0.1 -> 0.091 (150-step warm-up);
    # 0.2 -> 0.349: too warm, identical anchors barely split apart. Keep T well under 0.2.
    temperature: float = Field(
        default=0.1,
        gt=0,
        le=100,
        description="T in eq. 10: how evenly a box is shared. Smaller gives more of it to its closest "
        "anchors, towards the hard assignment.",
    )
    dist: Literal["iou", "log_l2"] = Field(
        default="iou",
        description="The soft assignment's box-to-anchor distance. iou: 1 - shape IoU, so a small T is "
        "YOLOv2's hard assignment; log_l2: squared distance in log w-h, the clustering term's metric.",
    )


class ClusteringConfig(_Section):
    """Trick 2 (eq. 11-12): online k-means in log space, added to the loss during warm-up."""

    enabled: bool = Field(
        default=True, description="Add the online k-means term to the loss during warm-up (eq. 11-12)."
    )
    # Identical init, demo schedule, seeds 0-2: error 0.032/0.016/0.031 at 1.0, 0.012/0.009/0.023
    # at 3.0 (0.085 at 0.3 on seed 0), AP50 unchanged.
    weight: float = Field(
        default=3.0,
        ge=0,
        le=MAX_WEIGHT,
        description="lambda, the clustering term's weight in the loss (0: the term has no effect).",
    )


class TricksConfig(_Section):
    # 300 measured best of {150, 300} on the demo schedule (620 steps): identical-init error
    # 0.091 -> 0.032 (bench/anchor_recovery.py).
    warmup_steps: int = Field(
        default=300,
        ge=0,
        le=MAX_STEPS,
        description="Length in steps of the warm-up, the first steps of the run, during which soft "
        "assignment and the clustering term are on (0: no warm-up).",
    )
    soft_assign: SoftAssignConfig = Field(
        default_factory=SoftAssignConfig, description="Trick 1, soft assignment of boxes to anchors (eq. 10)."
    )
    clustering: ClusteringConfig = Field(
        default_factory=ClusteringConfig, description="Trick 2, the online clustering term (eq. 11-12)."
    )
    bn_no_shift: bool = Field(
        default=True,
        description="Trick 3: batch norm with a scale but no learned shift on the predicted size offsets "
        "(dw, dh), so their mean stays at zero and the anchors must carry the mean size.",
    )


class LossConfig(_Section):
    # YOLOv2's weights: objectness of positives 5, of background 1 (here 1 and 0.5 with BCE), box 1.
    obj: float = Field(
        default=1.0,
        ge=0,
        le=MAX_WEIGHT,
        description="Weight of the objectness loss of predictions assigned a box (0: the term is off).",
    )
    noobj: float = Field(
        default=0.5,
        ge=0,
        le=MAX_WEIGHT,
        description="Weight of the objectness loss of background predictions (0: the term is off).",
    )
    xy: float = Field(
        default=1.0, ge=0, le=MAX_WEIGHT, description="Weight of the box-centre loss (0: the term is off)."
    )
    wh: float = Field(
        default=1.0,
        ge=0,
        le=MAX_WEIGHT,
        description="Weight of the box width-height loss (0: the term is off).",
    )
    cls: float = Field(
        default=1.0,
        ge=0,
        le=MAX_WEIGHT,
        description="Weight of the classification loss (0: the term is off).",
    )
    ignore_iou: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="A background prediction whose decoded box overlaps a ground-truth box by more than "
        "this IoU is not penalised for its objectness.",
    )


class EvalConfig(_Section):
    every_epochs: int = Field(
        default=1,
        ge=0,
        le=MAX_EPOCHS,
        description="Evaluate on the validation images every this many epochs (0: only at the end).",
    )
    conf_threshold: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="A (box, class) pair is a candidate detection when objectness times the class "
        "probability is above this.",
    )
    nms_iou: float = Field(
        default=0.45,
        gt=0,
        le=1,
        description="Non-maximum suppression, per class: a candidate overlapping a better one by more "
        "than this IoU is dropped.",
    )
    # COCO's 100 is the usual, 1000 is plenty.
    max_detections: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="Most detections kept for each validation image (the best scored), held until the "
        "image is scored.",
    )


class OutputConfig(_Section):
    snapshot_every: int = Field(
        default=25,
        ge=1,
        le=MAX_STEPS,
        description="Steps between two snapshots of the anchors (and of progress); one is also taken at "
        "each epoch's end.",
    )
    checkpoint_every_epochs: int = Field(
        default=1,
        ge=1,
        le=MAX_EPOCHS,
        description="Epochs between two checkpoints a run can resume from; the last epoch always saves one.",
    )


class TrainConfig(_Section):
    """The whole run. `TrainConfig()` is a valid, complete configuration."""

    seed: int = Field(
        default=0,
        **SEED,
        description="Seed of the network's initialisation, the data order, the augmentation and the "
        "synthetic images.",
    )
    # Not part of what a checkpoint must match: a run resumes on another device (trainer.train.device).
    device: str = Field(
        default="auto",
        max_length=8,
        pattern=r"^(auto|cpu|cuda(:[0-9]{1,2})?)$",
        description="Where a one-process run (`anchor-opt train` without `--workers`) trains: auto (the "
        "first CUDA GPU, else the CPU), cpu, cuda or cuda:N; bf16 autocast on CUDA. Ray workers ignore "
        "it and use the device Ray gives them (docs/gpu.md).",
    )
    data: DataConfig = Field(default_factory=DataConfig, description="The dataset and how it is read.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The detector network.")
    anchors: AnchorConfig = Field(
        default_factory=AnchorConfig, description="The anchors: how many, how they start, how they learn."
    )
    tricks: TricksConfig = Field(
        default_factory=TricksConfig, description="The paper's three anchor-optimisation tricks."
    )
    loss: LossConfig = Field(default_factory=LossConfig, description="Weights of the YOLOv2 loss terms.")
    optim: OptimConfig = Field(
        default_factory=OptimConfig, description="The network's optimizer and learning-rate schedule."
    )
    eval: EvalConfig = Field(
        default_factory=EvalConfig, description="Evaluation on the validation images: when, and decoding."
    )
    output: OutputConfig = Field(
        default_factory=OutputConfig, description="How often anchor snapshots and checkpoints are written."
    )

    @model_validator(mode="after")
    def _check_levels(self) -> TrainConfig:
        levels = self.model.levels
        if levels is not None:
            if list(levels) != sorted(set(levels)):
                raise ValueError(f"model.levels={list(levels)} must be distinct strides in ascending order")
            if "num" not in self.anchors.model_fields_set:
                self.anchors.num = ANCHORS_PER_LEVEL
        a = self.anchors
        if a.init == "list" and a.values and len(a.values) != self.total_anchors:
            per = f"{a.num} on each of {len(levels)} model.levels" if levels else f"anchors.num is {a.num}"
            raise ValueError(f"anchors.values has {len(a.values)} pairs but {per}")
        return self

    @model_validator(mode="after")
    def _check_stride(self) -> TrainConfig:
        stride = self.coarsest_stride
        what = "coarsest level's stride" if self.model.levels else f"{self.model.backbone} stride"
        if self.model.image_size % stride:
            raise ValueError(
                f"model.image_size={self.model.image_size} must be a multiple of the {what} ({stride})"
            )
        ms = self.model.multiscale
        for name, value in (("min_size", ms.min_size), ("max_size", ms.max_size)):
            if value is not None and value % stride:
                raise ValueError(
                    f"model.multiscale.{name}={value} must be a multiple of the stride ({stride})"
                )
        low, high = self.multiscale_range
        if low > high:
            raise ValueError(f"model.multiscale.min_size={low} is above max_size={high}")
        return self

    @property
    def strides(self) -> list[int]:
        """The stride of each level the detector predicts at, finest first (one without model.levels)."""
        return list(self.model.levels or [BACKBONE_STRIDES[self.model.backbone]])

    @property
    def coarsest_stride(self) -> int:
        return max(self.strides)

    @property
    def total_anchors(self) -> int:
        """Anchors over all levels: anchors.num on each."""
        return self.anchors.num * len(self.strides)

    @property
    def multiscale_range(self) -> tuple[int, int]:
        """(smallest, largest) training input side when model.multiscale is on, in pixels."""
        stride, size, ms = self.coarsest_stride, self.model.image_size, self.model.multiscale
        low = ms.min_size if ms.min_size is not None else max(stride, size - 3 * stride)
        high = ms.max_size if ms.max_size is not None else size + 6 * stride
        return low, high
