"""The data settings of a run (`data:`): the source and its format, splits and classes, augmentation,
and the built-in synthetic set with its known box-shape mixture. trainer.config assembles them with
the other sections into `TrainConfig`. Importable without torch.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from trainer.config_base import MAX_IMAGES, MAX_PIXELS, SEED, _Section


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
