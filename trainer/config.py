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

    w: float = Field(gt=1, le=MAX_PIXELS, description="The shape's mean width, in pixels at the input size.")
    h: float = Field(gt=1, le=MAX_PIXELS, description="The shape's mean height, in pixels at the input size.")
    weight: float = Field(
        default=1.0,
        gt=0,
        le=1e6,
        description="Relative frequency of this shape: its share of objects is its weight over the sum "
        "of all weights.",
    )


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
    num_train: int = Field(
        default=2000, ge=1, le=MAX_IMAGES, description="Synthetic images rendered for training."
    )
    num_val: int = Field(
        default=200,
        ge=1,
        le=MAX_IMAGES,
        description="Synthetic images rendered for evaluation, drawn with a different seed than training's.",
    )
    num_classes: int = Field(
        default=3,
        ge=1,
        le=3,
        description="Synthetic object classes, taken in order from: filled rectangle, filled ellipse, "
        "hollow frame.",
    )
    # Each object is placed by up to 30 overlap tests against those already there, so the count is
    # capped where a scene is full anyway.
    max_objects: int = Field(
        default=4,
        ge=0,
        le=100,
        description="Most objects in one synthetic image; the count is drawn uniformly from "
        "`min_objects` to `max_objects`.",
    )
    min_objects: int = Field(
        default=1,
        ge=0,
        le=100,
        description="Fewest objects in one synthetic image (0 allows images with no objects).",
    )
    shapes: list[ShapeComponent] = Field(
        default_factory=_default_shapes,
        min_length=1,
        max_length=64,
        description="The box-shape mixture objects are drawn from, as `{w, h, weight}` components: "
        "the true anchors a run should recover.",
    )
    shape_jitter: float = Field(
        default=0.08,
        ge=0,
        le=1,
        description="Standard deviation of log w and log h around a component's shape (0: every box "
        "has exactly its component's shape).",
    )

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

    hflip: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Probability of a horizontal flip, for every dataset, synthetic included (0: never).",
    )
    scale: float = Field(
        default=0.25,
        ge=0,
        lt=1,
        description="Zoom by a factor drawn from `1 - scale` to `1 + scale` (0: no zoom); real data only.",
    )
    translate: float = Field(
        default=0.1,
        ge=0,
        le=0.5,
        description="Shift by up to this fraction of the input side (0: no shift); real data only.",
    )
    colour: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Colour jitter: brightness, contrast and saturation times `1 +- colour`, hue "
        "`+- colour/20` (0: none); real data only.",
    )
    min_visibility: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="A box cut by the image border after the zoom and shift is kept while this share of "
        "its area stays in view.",
    )
    min_size: float = Field(
        default=2.0,
        ge=0,
        le=MAX_PIXELS,
        description="A box cut by the image border is kept while it is at least this many pixels wide "
        "and high at the input size.",
    )


class DataConfig(_Section):
    # At most 2048 characters: an s3:// URI with a full 1024-byte key fits, and so does any sane path.
    source: str = Field(
        default="synthetic",
        min_length=1,
        max_length=2048,
        description="The dataset: `synthetic` (built in), a local folder or annotation file, or a "
        "`file://` or `s3://bucket/prefix` URI.",
    )
    allowed_root: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="A folder or `s3://bucket/prefix` the source must lie in when it is opened, symlinks "
        "resolved (the service sets it to the dataset root that admitted the source). None: no such "
        "check; a job never reads outside the source's own folder in any case.",
    )
    format: Literal["auto", "coco", "yolo", "voc", "brainwash"] = Field(
        default="auto",
        description="The dataset's layout. auto: detected (COCO annotations/*.json, YOLO "
        "images/+labels/+yaml, VOC Annotations/+ImageSets/, Brainwash *.idl); name it when a folder "
        "holds several.",
    )
    train_split: str = Field(
        default="train",
        max_length=512,
        description="The training split as the format names it (COCO train2017, VOC trainval, a YOLO "
        "yaml key, a Brainwash .idl); `a+b` joins splits. Ignored for a single annotation file.",
    )
    val_split: str = Field(
        default="val",
        max_length=512,
        description="The validation split, named like `train_split`. Unused when `val_fraction` is set "
        "or the source is a single annotation file.",
    )
    classes: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=256)]], Field(min_length=1, max_length=10_000)
        ]
        | Annotated[str, Field(min_length=1, max_length=1024)]
        | None
    ) = Field(
        default=None,
        description="Class names in id order: a list, or a names file (one name a line, relative to the "
        "dataset's folder); a name the data uses that is missing is an error. None: the dataset's own "
        "(VOC: its 20, or the names its XML files use, sorted; COCO: categories by id; YOLO: the yaml's).",
    )
    val_fraction: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Hold out this share of the train split's images for validation, a stable draw by "
        "`split_seed`, for sets without a validation list (`val_split` is then unused). None: use "
        "`val_split`.",
    )
    split_seed: int = Field(default=0, **SEED, description="Seed of the `val_fraction` hold-out draw.")
    skip_bad: bool = Field(
        default=False,
        description="Skip and count malformed annotation lines and unreadable images instead of stopping "
        "with an error naming the file and line. Bad boxes are always clipped or dropped, and counted.",
    )
    workers: int = Field(
        default=2,
        ge=0,
        le=64,
        description="DataLoader processes decoding and augmenting real images (0: in the training "
        "process itself).",
    )
    # Memory: S*S*3 bytes an image, 0.5 MB at 416 px.
    cache_images: bool = Field(
        default=False,
        description="Decode and letterbox every image once, at the start, and keep it in memory: for small "
        "datasets read many times over. Refused, naming the setting, when that would take over half "
        "the memory available.",
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Training-time augmentation.")
    synthetic: SyntheticConfig = Field(
        default_factory=SyntheticConfig, description="The built-in synthetic dataset (`source: synthetic`)."
    )

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
    reorg: Literal["space_to_depth", "darknet"] = Field(
        default="space_to_depth",
        description="How darknet19's passthrough folds into 4x the channels. space_to_depth: "
        "F.pixel_unshuffle; darknet: the order of darknet's [reorg] layer, needed only for a full "
        "yolo-voc.weights (docs/pretrained.md).",
    )


class AnchorConfig(_Section):
    # YOLOv2 uses 5.
    num: int = Field(default=5, ge=1, le=32, description="A, the number of anchors per grid cell.")
    init: Literal["identical", "uniform", "kmeans", "list"] = Field(
        default="kmeans",
        description="How the anchors start. identical: all equal to `anchors.size`; uniform: spread "
        "evenly in log w-h over the training boxes' range; kmeans: YOLOv2's IoU k-means on the "
        "training boxes; list: `anchors.values` as given.",
    )
    size: float | None = Field(
        default=None,
        gt=0,
        le=MAX_PIXELS,
        description="Side in pixels of the square every anchor starts as with `init: identical`. None: "
        "the training boxes' geometric mean shape.",
    )
    # As many pairs as anchors.num, so at most 32.
    values: list[tuple[Side, Side]] | None = Field(
        default=None,
        max_length=32,
        description="The anchors for `init: list`, as `[[w, h], ...]` in pixels at the input size, one pair "
        "per anchor.",
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
