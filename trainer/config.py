"""Every training setting in one config object, with its default and the reason for it.

Importable without torch: the job contract (service side) reuses these models. Units: sizes are
pixels at the model's input size unless a name says otherwise; steps are optimizer steps.

The paper (Zhong et al., WACV 2020) does not give the temperature T, the clustering weight lambda,
the warm-up length, the distance used by the soft assignment, or where the shift-free batch norm
sits. Those defaults are ours, chosen by the measurements in `bench/` (docs/method.md).

Longer than 300 lines because every setting is here, section after section, each with its bound and
the reason for its default: one page a user reads to know what a run can be told.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Input pixels per grid cell of each backbone (trainer.model.detector builds them with these strides).
BACKBONE_STRIDES = {"tiny": 16, "darknet19": 32}

# Hard caps: what no run needs, local or in the service, so that no value (a YAML typo, a request)
# can ask for unbounded memory or time. They are generous for real local use (COCO at 608 px, batch
# 64, 300 epochs fit well within them); a service applies tighter limits an operator may raise
# (service.settings.JobLimits).
MAX_PIXELS = 8192  # any box or anchor side, pixels at the input size (4x the largest input)
MAX_IMAGES = 100_000  # synthetic images per split: each is rendered and kept in memory
MAX_STEPS = 10_000_000  # any count of optimizer steps
MAX_EPOCHS = 10_000
MAX_WEIGHT = 10_000.0  # loss and clustering weights
# Seeds (`seed`, `anchors.seed`): what every generator the run seeds accepts. numpy's SeedSequence
# and default_rng refuse negatives (a run with seed -1 failed: "expected non-negative
# integer"); the data order's torch generator is seeded with seed * 100_003 + epoch, which must fit
# 64 bits (2**63 - 1 and 2**64 failed: "Overflow when unpacking long long"); numpy's legacy
# RandomState takes only 0 <= seed < 2**32, the range every one of them accepts.
SEED = {"ge": 0, "lt": 2**32}
Side = Annotated[float, Field(gt=0, le=MAX_PIXELS)]  # an anchor's width or height in pixels


def _numeric(annotation: Any) -> bool:
    """Whether a field's type takes numbers and not booleans (int, float, their lists, optionals)."""
    if annotation in (int, float):
        return True
    args = [a for a in get_args(annotation) if a is not type(None)]
    return bool(args) and bool not in args and any(_numeric(a) for a in args)


def _holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    return isinstance(value, list | tuple) and any(_holds_bool(v) for v in value)


class _Section(BaseModel):
    # Unknown keys are errors, so a typo in a YAML file or a --set is never silently ignored.
    # inf and nan are refused everywhere: YAML's .inf and JSON's Infinity would pass `lr > 0`, and
    # a stored spec would not read back (JSON has no inf: it is written as null).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic would take true as 1 (`--set optim.epochs=true`, `{"epochs": true}`); a boolean
        # where a number goes is a mistake. A float with a fraction for an integer is refused by
        # pydantic itself ("got a number with a fractional part").
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _numeric(field.annotation) and _holds_bool(value):
            if isinstance(value, bool):
                raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
            raise ValueError(f"expected numbers, found a boolean in {value!r}")
        return value


class ShapeComponent(_Section):
    """One component of the synthetic box-shape mixture: a box shape and its share of objects."""

    w: float = Field(gt=1, le=MAX_PIXELS, description="mean width, pixels at the input size")
    h: float = Field(gt=1, le=MAX_PIXELS, description="mean height, pixels at the input size")
    weight: float = Field(default=1.0, gt=0, le=1e6, description="relative frequency of this shape")


def _default_shapes() -> list[ShapeComponent]:
    # Five well-separated shapes on a 128 px input: small square, tall, wide, medium, large.
    # Separated by >= 0.5 in log space so "recovered" has an unambiguous meaning.
    return [
        ShapeComponent(w=12, h=12),
        ShapeComponent(w=16, h=40),
        ShapeComponent(w=42, h=18),
        ShapeComponent(w=36, h=36),
        ShapeComponent(w=72, h=56),
    ]


class SyntheticConfig(_Section):
    """The built-in dataset (data.source: synthetic): shapes drawn from a known mixture."""

    # Every image is rendered in every worker's memory: S * S * 3 bytes each (service.capacity).
    num_train: int = Field(default=2000, ge=1, le=MAX_IMAGES)  # images rendered for training
    num_val: int = Field(default=200, ge=1, le=MAX_IMAGES)  # images for evaluation (a different seed)
    num_classes: int = Field(default=3, ge=1, le=3)  # synthetic classes: rectangle, ellipse, cross
    # Objects per image are uniform in [min, max]; each one is placed by up to 30 overlap tests
    # against those already there, so the count is capped where a scene is full anyway.
    max_objects: int = Field(default=4, ge=0, le=100)
    min_objects: int = Field(default=1, ge=0, le=100)
    shapes: list[ShapeComponent] = Field(default_factory=_default_shapes, min_length=1, max_length=64)
    shape_jitter: float = Field(default=0.08, ge=0, le=1)  # std of log w and log h around a shape

    @model_validator(mode="after")
    def _check_counts(self) -> SyntheticConfig:
        if self.min_objects > self.max_objects:
            raise ValueError("data.synthetic.min_objects must be <= data.synthetic.max_objects")
        return self


class AugmentConfig(_Section):
    """Training-time augmentation (albumentations). Evaluation uses the letterbox resize only.

    The geometric and colour ranges are YOLOv5-like values scaled down for small datasets and
    short CPU runs; they are not tuned here. Synthetic images are already at the input size and
    get the flip only.
    """

    hflip: float = Field(default=0.5, ge=0, le=1)  # probability of a horizontal flip
    scale: float = Field(default=0.25, ge=0, lt=1)  # zoom by a factor drawn from [1 - scale, 1 + scale]
    translate: float = Field(default=0.1, ge=0, le=0.5)  # shift by up to this fraction of the input
    colour: float = Field(default=0.3, ge=0, le=1)  # brightness/contrast/saturation x [1 +- c], hue +- c/20
    # A box cut by the image border is kept while this share of its area stays in view...
    min_visibility: float = Field(default=0.3, ge=0, le=1)
    # ...and while it is at least this many pixels wide and high at the input size.
    min_size: float = Field(default=2.0, ge=0, le=MAX_PIXELS)


class DataConfig(_Section):
    # "synthetic" (built in), a local folder or annotation file, a file:// or an s3://bucket/prefix URI.
    # At most 2048 characters: an s3:// URI with a full 1024-byte key fits, and so does any sane path.
    source: str = Field(default="synthetic", min_length=1, max_length=2048)
    # A folder or s3://bucket/prefix the source must lie in when it is opened (symlinks resolved
    # then). The service sets it to the dataset root that admitted the source. Whatever it is, a
    # job reads nothing outside the source's own folder (trainer.data.root).
    allowed_root: str | None = Field(default=None, min_length=1, max_length=2048)
    # auto: detected from the layout (COCO annotations/*.json, YOLO images/+labels/+yaml, VOC
    # Annotations/+ImageSets/, Brainwash *.idl); give it when a folder holds several.
    format: Literal["auto", "coco", "yolo", "voc", "brainwash"] = "auto"
    # Split names as the format calls them (COCO train2017, VOC trainval, a YOLO yaml key, a
    # Brainwash .idl); "a+b" joins splits. Ignored when the source is a single annotation file.
    train_split: str = Field(default="train", max_length=512)
    val_split: str = Field(default="val", max_length=512)
    # Class names and their order (ids 0..C-1): a list, or a names file (one name a line; relative
    # to the dataset's folder). None: the dataset's own (VOC: the 20 VOC classes, or the names its
    # XML files use, sorted; COCO: categories by id; YOLO: the yaml's names). A name the data uses
    # that a given list lacks is an error naming the file and object (trainer.data.classes).
    classes: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=256)]], Field(min_length=1, max_length=10_000)
        ]
        | Annotated[str, Field(min_length=1, max_length=1024)]
        | None
    ) = None
    # Hold out this share of the train split's images for validation (val_split is then unused):
    # a seeded, stable draw (`split_seed`), for sets that come without a validation list.
    val_fraction: float | None = Field(default=None, gt=0, lt=1)
    split_seed: int = Field(default=0, **SEED)
    # Bad lines and unreadable images are errors naming the file and line; with skip_bad they are
    # skipped and counted in the dataset summary instead. Bad boxes are always clipped/dropped and counted.
    skip_bad: bool = False
    workers: int = Field(default=2, ge=0, le=64)  # DataLoader worker processes for real images
    # Decode and letterbox every image once, at the start, and keep it in memory (S*S*3 bytes
    # each: 0.5 MB at 416 px): for small datasets read many times over.
    cache_images: bool = False
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)

    @property
    def is_synthetic(self) -> bool:
        return self.source == "synthetic"

    @model_validator(mode="after")
    def _check_classes(self) -> DataConfig:
        if isinstance(self.classes, list) and len(set(self.classes)) != len(self.classes):
            twice = sorted({c for c in self.classes if self.classes.count(c) > 1})
            raise ValueError(f"data.classes lists {', '.join(map(repr, twice))} more than once")
        if isinstance(self.classes, str) and not self.classes.strip():
            raise ValueError("data.classes: an empty names file path")
        return self


class MultiScaleConfig(_Section):
    """darknet's `random=1`: every `every_steps` steps the training input side is redrawn from
    [min_size, max_size] in multiples of the stride (the batch resized, boxes and anchors scaled
    with it). Evaluation stays at model.image_size. Defaults: image_size - 3 strides to image_size +
    6 strides, which is darknet's 320-608 at 416 px."""

    enabled: bool = False
    every_steps: int = Field(default=10, ge=1, le=MAX_STEPS)  # darknet redraws every 10 batches
    min_size: int | None = Field(default=None, ge=32, le=2048)
    max_size: int | None = Field(default=None, ge=32, le=2048)


class ModelConfig(_Section):
    # `tiny` is a small fast backbone (stride 16) for CPUs and tests; `darknet19` is the paper's
    # YOLOv2 backbone with the passthrough layer (stride 32), meant for GPUs.
    backbone: Literal["tiny", "darknet19"] = "tiny"
    image_size: int = Field(default=128, ge=32, le=2048)  # square input; a multiple of the stride
    width: float = Field(default=1.0, gt=0, le=4)  # channel multiplier for `tiny`
    multiscale: MultiScaleConfig = Field(default_factory=MultiScaleConfig)
    # Weights to start from (trainer.model.pretrained, docs/pretrained.md): a local path, file:// or
    # s3:// URI of darknet weights (darknet19_448.conv.23, yolo-voc.weights; darknet19 only), a
    # PyTorch state dict, or a finished job's artifacts/weights.pt. Tensors whose name and shape
    # match are loaded; the anchors always come from `anchors.init`. None: random initialisation.
    pretrained: str | None = Field(default=None, min_length=1, max_length=2048)
    # A folder or s3://bucket/prefix `pretrained` must lie in when it is opened, like
    # data.allowed_root: the service sets it to the root that admitted `pretrained`.
    pretrained_allowed_root: str | None = Field(default=None, min_length=1, max_length=2048)
    # How darknet19's passthrough is folded into 4x the channels: `space_to_depth`
    # (F.pixel_unshuffle) or `darknet`, the order darknet's [reorg] layer produces, which mixes
    # positions (not a channel permutation of the other: docs/pretrained.md). Only a full
    # yolo-voc.weights, whose fuse conv was trained on darknet's order, needs `darknet`.
    reorg: Literal["space_to_depth", "darknet"] = "space_to_depth"


class AnchorConfig(_Section):
    num: int = Field(default=5, ge=1, le=32)  # A, anchors per cell (YOLOv2 uses 5)
    # identical: all A equal to `size`; uniform: spread evenly in log w-h over the data's range;
    # kmeans: YOLOv2's IoU k-means on the training boxes; list: `values` as given.
    init: Literal["identical", "uniform", "kmeans", "list"] = "kmeans"
    size: float | None = Field(default=None, gt=0, le=MAX_PIXELS)  # identical init; None: the boxes' mean
    # (w, h) pixels at the input size, for init=list; as many pairs as anchors.num, so at most 32.
    values: list[tuple[Side, Side]] | None = Field(default=None, max_length=32)
    learn: bool = True  # False freezes the anchors: the baseline detector
    lr: float = Field(default=0.02, gt=0, le=10)  # own learning rate (log-space units per step under Adam)
    seed: int = Field(default=0, **SEED)  # k-means initialisation

    @model_validator(mode="after")
    def _check_values(self) -> AnchorConfig:
        if self.init == "list":
            if not self.values:
                raise ValueError("anchors.values must list (w, h) pairs when anchors.init is 'list'")
            if len(self.values) != self.num:
                raise ValueError(f"anchors.values has {len(self.values)} pairs but anchors.num is {self.num}")
        return self


class SoftAssignConfig(_Section):
    """Trick 1 (eq. 10): during warm-up a box is shared by all anchors of its cell."""

    enabled: bool = True
    # T. With dist=iou the distances lie in [0, 1]; 0.1 lets a 0.1 better IoU count e times more.
    # Measured from an identical init: 0.05 -> error 0.146, 0.1 -> 0.091 (150-step warm-up);
    # 0.2 -> 0.349: too warm, identical anchors barely split apart. Keep T well under 0.2.
    temperature: float = Field(default=0.1, gt=0, le=100)
    # iou: 1 - shape IoU, so T -> 0 is exactly YOLOv2's hard assignment; log_l2: squared distance
    # in log w-h space, the clustering term's own metric.
    dist: Literal["iou", "log_l2"] = "iou"


class ClusteringConfig(_Section):
    """Trick 2 (eq. 11-12): online k-means in log space, added to the loss during warm-up."""

    enabled: bool = True
    # lambda. Identical init, demo schedule, seeds 0-2: error 0.032/0.016/0.031 at 1.0, 0.012/0.009/0.023
    # at 3.0 (0.085 at 0.3 on seed 0), AP50 unchanged.
    weight: float = Field(default=3.0, ge=0, le=MAX_WEIGHT)


class TricksConfig(_Section):
    # Both warm-up tricks are on for these first steps. 300 measured best of {150, 300} on the demo
    # schedule (620 steps): identical-init error 0.091 -> 0.032 (bench/anchor_recovery.py).
    warmup_steps: int = Field(default=300, ge=0, le=MAX_STEPS)
    soft_assign: SoftAssignConfig = Field(default_factory=SoftAssignConfig)
    clustering: ClusteringConfig = Field(default_factory=ClusteringConfig)
    # Trick 3: batch norm with a scale but no learned shift on the predicted dw, dh, so their mean
    # stays at zero and the anchors must carry the mean size.
    bn_no_shift: bool = True


class LossConfig(_Section):
    # YOLOv2's weights: objectness of positives 5, of background 1 (here 1 and 0.5 with BCE), box 1.
    obj: float = Field(default=1.0, ge=0, le=MAX_WEIGHT)
    noobj: float = Field(default=0.5, ge=0, le=MAX_WEIGHT)
    xy: float = Field(default=1.0, ge=0, le=MAX_WEIGHT)
    wh: float = Field(default=1.0, ge=0, le=MAX_WEIGHT)
    cls: float = Field(default=1.0, ge=0, le=MAX_WEIGHT)
    ignore_iou: float = Field(default=0.6, ge=0, le=1)  # background predictions over this IoU are ignored


class OptimConfig(_Section):
    optimizer: Literal["adamw", "sgd"] = "adamw"  # AdamW trains the tiny model fastest on CPU
    lr: float = Field(default=2e-3, gt=0, le=10)
    momentum: float = Field(default=0.9, ge=0, lt=1)  # SGD momentum / Adam beta1
    weight_decay: float = Field(default=5e-4, ge=0, le=1)  # conv weights only; never anchors, BN or biases
    batch_size: int = Field(default=32, ge=1, le=1024)  # per worker under DDP
    epochs: int = Field(default=10, ge=1, le=MAX_EPOCHS)
    # The lr ramps from 0 over these first steps as (step / lr_warmup_steps) ** lr_warmup_power:
    # 1 is a linear ramp, darknet's burn_in uses 4.
    lr_warmup_steps: int = Field(default=50, ge=0, le=MAX_STEPS)
    lr_warmup_power: float = Field(default=1.0, ge=0.1, le=10)
    # Then `cosine` (to 5 % at the end) or `step`: x lr_step_factor at each epoch in lr_step_epochs
    # (darknet's steps/scales, in epochs).
    schedule: Literal["cosine", "step"] = "cosine"
    lr_step_epochs: list[Annotated[int, Field(ge=1, le=MAX_EPOCHS)]] = Field(
        default_factory=list, max_length=32
    )
    lr_step_factor: float = Field(default=0.1, gt=0, le=1)
    # Layers loaded from model.pretrained: their lr is lr x pretrained_lr_factor, and 0 (frozen)
    # for the first freeze_pretrained_epochs epochs, while the new head learns.
    pretrained_lr_factor: float = Field(default=1.0, ge=0, le=10)
    freeze_pretrained_epochs: int = Field(default=0, ge=0, le=MAX_EPOCHS)
    grad_clip: float = Field(default=10.0, gt=0, le=1e6)

    @model_validator(mode="after")
    def _check_steps(self) -> OptimConfig:
        if self.lr_step_epochs != sorted(set(self.lr_step_epochs)):
            raise ValueError("optim.lr_step_epochs must be increasing epochs without repeats")
        if self.schedule == "step" and not self.lr_step_epochs:
            raise ValueError("optim.schedule 'step' needs optim.lr_step_epochs (e.g. [60, 90])")
        return self


class EvalConfig(_Section):
    every_epochs: int = Field(default=1, ge=0, le=MAX_EPOCHS)  # 0 = only at the end
    conf_threshold: float = Field(default=0.01, ge=0, le=1)
    nms_iou: float = Field(default=0.45, gt=0, le=1)
    # Kept for every validation image until it is scored: COCO's 100 is the usual, 1000 is plenty.
    max_detections: int = Field(default=100, ge=1, le=1000)


class OutputConfig(_Section):
    snapshot_every: int = Field(default=25, ge=1, le=MAX_STEPS)  # anchor snapshots: every N steps, each epoch
    checkpoint_every_epochs: int = Field(default=1, ge=1, le=MAX_EPOCHS)


class TrainConfig(_Section):
    """The whole run. `TrainConfig()` is a valid, complete configuration."""

    seed: int = Field(default=0, **SEED)  # network init, data order, augmentation, synthetic images
    # Where a run in one process (`anchor-opt train` without --workers) trains: auto (the first CUDA
    # GPU if there is one, else the CPU), cpu, cuda or cuda:N (trainer.train.device). Ray workers
    # ignore it: each trains on the device Ray gives it (--gpus-per-worker, a job's resources).
    # Not part of what a checkpoint must match: a run resumes on another device.
    device: str = Field(default="auto", max_length=8, pattern=r"^(auto|cpu|cuda(:[0-9]{1,2})?)$")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    anchors: AnchorConfig = Field(default_factory=AnchorConfig)
    tricks: TricksConfig = Field(default_factory=TricksConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="after")
    def _check_stride(self) -> TrainConfig:
        stride = BACKBONE_STRIDES[self.model.backbone]
        if self.model.image_size % stride:
            raise ValueError(
                f"model.image_size={self.model.image_size} must be a multiple of the "
                f"{self.model.backbone} stride ({stride})"
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
    def multiscale_range(self) -> tuple[int, int]:
        """(smallest, largest) training input side when model.multiscale is on, in pixels."""
        stride, size, ms = BACKBONE_STRIDES[self.model.backbone], self.model.image_size, self.model.multiscale
        low = ms.min_size if ms.min_size is not None else max(stride, size - 3 * stride)
        high = ms.max_size if ms.max_size is not None else size + 6 * stride
        return low, high
