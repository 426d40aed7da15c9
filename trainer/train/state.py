"""A run's training state, and how a fresh one is built: the optimizer's groups and the schedules.

A run's whole state is `TrainState`: model (anchors included), optimizer, scheduler, and the global
step. Everything else is derived from the step: the epoch and the position in it, whether the
anchor warm-up is on, the data order (a permutation seeded by (seed, epoch)), and each sample's
augmentation (seeded by (seed, epoch, position)). So a checkpoint is exact: restored, a run
continues bit for bit as if it had never stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trainer.config import TrainConfig
from trainer.model.detector import Detector
from trainer.model.levels import level_anchors


@dataclass
class TrainState:
    cfg: TrainConfig
    model: Detector
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    init_anchors: Tensor  # [A, 2] px, where the anchors started
    steps_per_epoch: int
    step: int = 0
    rank: int = 0  # this process's DDP rank; each step it takes its slice of the global batch
    world_size: int = 1
    # What the step calls forward on: the model wrapped in DistributedDataParallel under Ray Train
    # (gradients, anchors' included, are averaged over ranks), else None for the model itself.
    net: nn.Module | None = None
    amp: bool = False  # bf16 autocast of the forward pass (on GPUs)
    pretrained: object = None  # what model.pretrained loaded (trainer.model.pretrained), if anything

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.optim.epochs

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    @property
    def in_warmup(self) -> bool:
        return self.step < self.cfg.tricks.warmup_steps

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps


def parameter_groups(
    model: Detector, cfg: TrainConfig, pretrained: frozenset[str] = frozenset()
) -> list[dict]:
    """Conv/linear weights decay; norms, biases and the shift-free BN scale do not; anchors get
    their own group (own lr, no decay) and are never caught by the blanket rule. Parameters named in
    `pretrained` (loaded from model.pretrained) go to groups of their own, for their lr factor and
    freeze (lr_factors). Empty groups are left out."""
    groups: dict[str, list] = {"decay": [], "no_decay": [], "pretrained_decay": [], "pretrained_no_decay": []}
    for name, p in model.named_parameters():
        if p is model.anchors.log_wh or not p.requires_grad:
            continue
        kind = "decay" if p.ndim > 1 else "no_decay"
        groups[f"pretrained_{kind}" if name in pretrained else kind].append(p)
    out = [
        {
            "params": params,
            "weight_decay": 0.0 if name.endswith("no_decay") else cfg.optim.weight_decay,
            "name": name,
        }
        for name, params in groups.items()
        if params or name in ("decay", "no_decay")
    ]
    if model.anchors.learn:
        out.append(model.anchors.param_group(cfg.anchors.lr))
    return out


def build_optimizer(
    model: Detector, cfg: TrainConfig, pretrained: frozenset[str] = frozenset()
) -> torch.optim.Optimizer:
    groups = parameter_groups(model, cfg, pretrained)
    if cfg.optim.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=(cfg.optim.momentum, 0.999))


def lr_factors(cfg: TrainConfig, steps_per_epoch: int, groups: list[dict]) -> list:
    """Per group, the lr factor of each step.

    The network ramps up over `lr_warmup_steps` as (step / ramp) ** lr_warmup_power, then follows
    the schedule: `cosine` to 5 % at the end, or `step`, x lr_step_factor at each of lr_step_epochs.
    The anchors skip the ramp (the warm-up tricks need them moving from step 0) but share the
    schedule. Pretrained groups are x pretrained_lr_factor, and 0 for the first
    freeze_pretrained_epochs epochs."""
    opt = cfg.optim
    total_steps = steps_per_epoch * opt.epochs
    ramp = opt.lr_warmup_steps

    def schedule(step: int) -> float:
        if opt.schedule == "step":
            epoch = step // max(steps_per_epoch, 1)
            return opt.lr_step_factor ** sum(epoch >= e for e in opt.lr_step_epochs)
        t = min(step / max(total_steps, 1), 1.0)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))

    def network(step: int) -> float:
        return schedule(step) * (min(1.0, (step + 1) / ramp) ** opt.lr_warmup_power if ramp else 1.0)

    def pretrained(step: int) -> float:
        if step // max(steps_per_epoch, 1) < opt.freeze_pretrained_epochs:
            return 0.0
        return network(step) * opt.pretrained_lr_factor

    by_name = {"anchors": schedule, "pretrained_decay": pretrained, "pretrained_no_decay": pretrained}
    return [by_name.get(g.get("name"), network) for g in groups]


def build_state(
    cfg: TrainConfig,
    train_boxes_wh: Tensor,
    num_train: int,
    num_classes: int,
    rank: int = 0,
    world_size: int = 1,
    storage=None,
) -> TrainState:
    """A fresh run: anchors initialised from the training boxes (pixels at the input size), network
    seeded by `cfg.seed`, a head for the dataset's `num_classes`, then the layers model.pretrained
    holds loaded over it (read with `storage`, the run's StorageSettings, for s3:// weights).

    Under DDP every rank builds the same state; `optim.batch_size` is per rank, so a step's global
    batch is batch_size * world_size images and an epoch has that many fewer steps."""
    global_batch = cfg.optim.batch_size * world_size
    if num_train < global_batch:
        raise ValueError(
            f"optim.batch_size={cfg.optim.batch_size} x {world_size} workers is larger than the training set "
            f"({num_train} images)"
        )
    init = level_anchors(cfg, train_boxes_wh)
    with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's RNG
        torch.manual_seed(cfg.seed)
        model = Detector(cfg, init, num_classes)
    report = None
    if cfg.model.pretrained:
        from trainer.model.pretrained import load_pretrained

        report = load_pretrained(model, cfg.model.pretrained, storage, cfg.model.pretrained_allowed_root)
    loaded = frozenset(report.loaded if report is not None else ())
    optimizer = build_optimizer(model, cfg, loaded)
    steps_per_epoch = num_train // global_batch  # drop_last: every step sees a full batch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factors(cfg, steps_per_epoch, optimizer.param_groups)
    )
    state = TrainState(cfg, model, optimizer, scheduler, init.clone(), steps_per_epoch, 0, rank, world_size)
    state.pretrained = report
    return state
