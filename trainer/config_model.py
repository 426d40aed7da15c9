"""The network and anchor settings of a run (`model:`, `anchors:`): the backbone, the input size,
multi-scale training, the feature levels, warm-start weights; how many anchors, how they start and
learn. Importable without torch (trainer.config gathers every section into TrainConfig)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from trainer.config_base import MAX_PIXELS, MAX_STEPS, SEED, Side, _Section

# Input pixels per grid cell of each backbone (trainer.model.detector builds them with these strides).
BACKBONE_STRIDES = {"tiny": 16, "darknet19": 32}
# The strides model.levels may name: 8 is the finest map either backbone has, 64 one extra
# stride-2 layer past darknet19's last.
LevelStride = Literal[8, 16, 32, 64]
LEVEL_STRIDES: tuple[int, ...] = get_args(LevelStride)
# With model.levels and no anchors.num given, each level gets three anchors, as YOLOv3's nine on three.
ANCHORS_PER_LEVEL = 3


class MultiScaleConfig(_Section):
    """darknet's `random=1`: every `every_steps` steps the training input side is redrawn from
    [min_size, max_size] in multiples of the stride (the batch resized, boxes and anchors scaled
    with it). Evaluation stays at model.image_size. Defaults: image_size - 3 strides to image_size +
    6 strides, which is darknet's 320-608 at 416 px."""

    enabled: bool = Field(
        default=False,
        description="Train at a randomly redrawn input size, darknet's `random=1` (docs/recipe.md).",
    )
    # darknet redraws every 10 batches.
    every_steps: int = Field(
        default=10, ge=1, le=MAX_STEPS, description="Steps between two redraws of the training input side."
    )
    min_size: int | None = Field(
        default=None,
        ge=32,
        le=2048,
        description="Smallest training input side in pixels, a multiple of the stride. None: "
        "`model.image_size` - 3 strides.",
    )
    max_size: int | None = Field(
        default=None,
        ge=32,
        le=2048,
        description="Largest training input side in pixels, a multiple of the stride. None: "
        "`model.image_size` + 6 strides.",
    )


class ModelConfig(_Section):
    backbone: Literal["tiny", "darknet19"] = Field(
        default="tiny",
        description="tiny: a small fast backbone (stride 16) for CPUs and tests; darknet19: the paper's "
        "YOLOv2 backbone with the passthrough layer (stride 32), meant for GPUs.",
    )
    image_size: int = Field(
        default=128,
        ge=32,
        le=2048,
        description="Side of the square model input in pixels, a multiple of the backbone's stride.",
    )
    width: float = Field(
        default=1.0,
        gt=0,
        le=4,
        description="Channel multiplier of the `tiny` backbone (unused by darknet19).",
    )
    multiscale: MultiScaleConfig = Field(
        default_factory=MultiScaleConfig, description="Multi-scale training (darknet's `random=1`)."
    )
    pretrained: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="Weights to start from, as a path, `file://` or `s3://` URI: darknet's "
        "(darknet19_448.conv.23, yolo-voc.weights; darknet19 only), a PyTorch state dict, or a job's "
        "artifacts/weights.pt; tensors whose name and shape match are loaded, never the anchors "
        "(docs/pretrained.md). None: random initialisation.",
    )
    pretrained_allowed_root: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="Like `data.allowed_root`, for `model.pretrained`: a folder or `s3://bucket/prefix` "
        "it must lie in (the service sets it). None: no such check.",
    )
    levels: list[LevelStride] | None = Field(
        default=None,
        min_length=1,
        max_length=4,
        description="Strides of the feature levels to predict at, ascending, e.g. [8, 16, 32]: an "
        "FPN-style neck on the backbone and a YOLO head per level, `anchors.num` anchors on each (3 "
        "when not given), one anchor parameter over all levels (docs/levels.md). None: one level at the "
        "backbone's stride, YOLOv2's head.",
    )
    reorg: Literal["space_to_depth", "darknet"] = Field(
        default="space_to_depth",
        description="How darknet19's passthrough folds into 4x the channels. space_to_depth: "
        "F.pixel_unshuffle; darknet: the order of darknet's [reorg] layer, needed only for a full "
        "yolo-voc.weights (docs/pretrained.md).",
    )


class AnchorConfig(_Section):
    # YOLOv2 uses 5.
    num: int = Field(
        default=5,
        ge=1,
        le=32,
        description="A, the number of anchors per grid cell, on each level with `model.levels` (then 3 "
        "when not given).",
    )
    init: Literal["identical", "uniform", "kmeans", "list"] = Field(
        default="kmeans",
        description="How the anchors start. identical: all equal to `anchors.size`; uniform: spread "
        "evenly in log w-h over the training boxes' range; kmeans: IoU k-means (YOLOv2's distance, "
        "median centroids) on the training boxes; list: `anchors.values` as given. With `model.levels` "
        "the init makes every level's anchors and sorts them by area into levels.",
    )
    size: float | None = Field(
        default=None,
        gt=0,
        le=MAX_PIXELS,
        description="Side in pixels of the square every anchor starts as with `init: identical`. None: "
        "the training boxes' geometric mean shape.",
    )
    # As many pairs as anchors, so at most 4 levels of 32.
    values: list[tuple[Side, Side]] | None = Field(
        default=None,
        max_length=128,
        description="The anchors for `init: list`, as `[[w, h], ...]` in pixels at the input size, one pair "
        "per anchor: anchors.num, times the number of levels with `model.levels` (sorted by area and "
        "split into levels, the smallest on the finest).",
    )
    learn: bool = Field(
        default=True,
        description="Learn the anchors during training; false freezes them at their initial shapes (the "
        "baseline detector).",
    )
    lr: float = Field(
        default=0.02,
        gt=0,
        le=10,
        description="The anchors' own learning rate, in log-space units per step under Adam.",
    )
    seed: int = Field(default=0, **SEED, description="Seed of the k-means initialisation (`init: kmeans`).")
    level_order: Literal["area", "none"] = Field(
        default="area",
        description="With `model.levels`: what keeps small anchors on fine levels while they learn. "
        "area: at every snapshot, anchors that have outgrown (or shrunk below) their level trade "
        "places so the levels stay ordered by area, finest smallest (docs/levels.md); none: each "
        "anchor stays on the level it started on.",
    )

    @model_validator(mode="after")
    def _check_values(self) -> AnchorConfig:
        if self.init == "list" and not self.values:
            raise ValueError("anchors.values must list (w, h) pairs when anchors.init is 'list'")
        return self
