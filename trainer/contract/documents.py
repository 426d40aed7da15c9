"""The JSON documents under a job's storage prefix (DESIGN.md, "Storage layout"), as pydantic models.

    jobs/<id>/job.json              JobRecord       spec as accepted, submit time, who    (service)
    jobs/<id>/status.json           JobStatus       state, progress, last error           (trainer*)
    jobs/<id>/anchors/<step>.json   AnchorSnapshot  anchors in pixels and fit metrics     (trainer)
    jobs/<id>/metrics/<epoch>.json  EpochMetrics    losses, learning rates, evaluation    (trainer)
    jobs/<id>/result.json           JobResult       final anchors, metrics, artifact keys (trainer)

"trainer" is the run's rank 0 (and its driver). *The service writes the launch (`launched_at`), a
cancel, and the end of a job it finds dead; the trainer writes every other change. Every one of them
is a compare-and-swap (trainer.contract.transitions), so none is lost and an ended state is final. A job
whose status.json is not written yet is QUEUED since `submitted_at` (job.json is the only object a
submit writes, so a job is created whole or not at all).

The trainer writes plain dicts; these models are how readers (the service, tests, other tools)
parse them. Documents may carry fields added later (`extra="allow"`), so an older reader keeps
working; the trainer's own tests check that what it writes has no field these models do not name.
Units: anchors are (w, h) pixels at the model's input size; times are Unix seconds.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from trainer.contract.spec import JobSpec, JobState


class _Document(BaseModel):
    model_config = ConfigDict(extra="allow")


class FitMetrics(_Document):
    """How well anchors fit the training boxes (trainer.model.anchors.anchor_fit); null without boxes."""

    mean_best_iou: float | None
    bpr: float | None
    anchors_per_target: float | None


class JobRecord(_Document):
    """job.json: written once, when the job is accepted (conditional create: never twice)."""

    id: str
    spec: JobSpec
    submitted_at: float
    submitted_by: str | None = None  # the tenant or token name that submitted it
    idempotency_key: str | None = None


class JobStatus(_Document):
    """status.json: the job's state and progress, rewritten whole at every change."""

    state: JobState
    step: int = 0
    total_steps: int | None = None
    epoch: int = 0
    epochs: int | None = None
    images_per_s: float | None = None
    eta_s: float | None = None  # seconds to the end at the current throughput
    phase: str | None = None  # "warmup" (anchor tricks on) or "main" while it trains
    workers: int | None = None  # DDP ranks
    attempt: int = 0  # how many times the run's training restarted (after a worker failure, or resumed)
    starts: int = 0  # training starts so far (RunWriter.start_attempt), this one included
    resumed_from_step: int | None = None  # the checkpoint's step, when this attempt resumed from one
    error: str | None = None  # why it FAILED (or was CANCELLED)
    launched_at: float | None = None  # when the service handed the job to Ray (None: still waiting)
    # The Ray job it was handed to as: `<job id>-<random>`, new at each launch, so a job id that an
    # older store (or another store on the same cluster) also used never names that store's Ray job.
    ray_submission_id: str | None = None
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    # Why the job is not training yet: "waiting for resources: 4 workers x 1 GPU; the cluster has
    # 0 GPUs free" while Ray cannot place its workers (trainer.train.ray_resources.ResourceWait), or
    # why the service has not launched it; None otherwise.
    waiting: str | None = None


class AnchorSnapshot(_Document):
    """anchors/<step:08d>.json: the anchors at one step (every N steps and at each epoch end)."""

    step: int
    epoch: int
    total_steps: int
    phase: str  # "warmup" (soft assignment and clustering on) or "main"
    image_size: int
    stride: int | None  # one level's; None with model.levels (see `strides`)
    strides: list[int] | None = None  # each level's stride, finest first (None: written before levels)
    levels: list[int] | None = None  # each anchor's level index into `strides`
    anchors: list[list[float]]  # [L * A][w, h] pixels at the input size, level after level
    anchors_cells: list[list[float]]  # the same in grid cells (darknet's unit), each at its level
    fit: FitMetrics  # on the augmented boxes rank 0 trained on since the previous snapshot
    fit_dataset: FitMetrics | None = None  # on every training box, unaugmented (letterboxed)
    assign_counts: list[float] | None = None  # boxes per anchor since the previous snapshot, all ranks
    losses: dict[str, float] | None = None  # mean loss terms since the previous snapshot
    time: float


class EpochMetrics(_Document):
    """metrics/<epoch:04d>.json: one epoch's losses, learning rates and evaluation."""

    epoch: int
    step: int
    losses: dict[str, float]
    loss_curve: list[dict[str, float]] = Field(default_factory=list)  # {"step", term: mean} points
    lr: dict[str, float]
    eval: dict | None = None  # trainer.train.evaluation.coco_eval: ap, ap50s, VOC ap50s, per class
    images_per_s: float


class ResultAnchors(_Document):
    init: list[list[float]]
    final: list[list[float]]
    final_cells: list[list[float]]
    learned: bool


class JobResult(_Document):
    """result.json: written once, at the end of a successful run."""

    steps: int
    epochs: int
    elapsed_s: float
    image_size: int
    stride: int | None  # one level's; None with model.levels (see `strides`)
    strides: list[int] | None = None  # each level's stride, finest first (None: written before levels)
    levels: list[int] | None = None  # each anchor's level index into `strides`
    anchors: ResultAnchors
    fit: dict[str, FitMetrics]  # "init", "final"
    eval: dict | None = None
    synthetic: dict | None = None  # recovery error against the synthetic set's true shapes
    # What model.pretrained loaded: {"source", "kind", "loaded" (tensors), "skipped" {key: why},
    # "notes"}; None when the run started from a random init.
    pretrained: dict | None = None
    ddp: dict  # {"workers", "anchor_rank_spread": max |anchor difference| of any rank to rank 0, px}
    artifacts: dict[str, str]  # name -> key (or prefix, for "checkpoints") under the job's prefix
