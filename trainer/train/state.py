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
from trainer.model.anchors import initial_anchors
from trainer.model.detector import Detector


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


def parameter_groups(model: Detector, cfg: TrainConfig) -> list[dict]:
    """Conv/linear weights decay; norms, biases and the shift-free BN scale do not; anchors get
    their own group (own lr, no decay) and are never caught by the blanket rule."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p is model.anchors.log_wh or not p.requires_grad:
            continue
        (decay if p.ndim > 1 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.optim.weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    if model.anchors.learn:
        groups.append(model.anchors.param_group(cfg.anchors.lr))
    return groups


def build_optimizer(model: Detector, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, cfg)
    if cfg.optim.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=(cfg.optim.momentum, 0.999))


def lr_factors(cfg: TrainConfig, total_steps: int, groups: list[dict]) -> list:
    """Per group: the network ramps up linearly for `lr_warmup_steps`, then follows a cosine to 5 %;
    the anchors skip the ramp (the warm-up tricks need them moving from step 0) but share the cosine."""
    ramp = cfg.optim.lr_warmup_steps

    def cosine(step: int) -> float:
        t = min(step / max(total_steps, 1), 1.0)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))

    def network(step: int) -> float:
        return cosine(step) * (min(1.0, (step + 1) / ramp) if ramp else 1.0)

    return [cosine if g.get("name") == "anchors" else network for g in groups]


def build_state(
    cfg: TrainConfig,
    train_boxes_wh: Tensor,
    num_train: int,
    num_classes: int,
    rank: int = 0,
    world_size: int = 1,
) -> TrainState:
    """A fresh run: anchors initialised from the training boxes (pixels at the input size), network
    seeded by `cfg.seed`, a head for the dataset's `num_classes`.

    Under DDP every rank builds the same state; `optim.batch_size` is per rank, so a step's global
    batch is batch_size * world_size images and an epoch has that many fewer steps."""
    global_batch = cfg.optim.batch_size * world_size
    if num_train < global_batch:
        raise ValueError(
            f"optim.batch_size={cfg.optim.batch_size} x {world_size} workers is larger than the training set "
            f"({num_train} images)"
        )
    init = initial_anchors(cfg.anchors, train_boxes_wh)
    with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's RNG
        torch.manual_seed(cfg.seed)
        model = Detector(cfg, init, num_classes)
    optimizer = build_optimizer(model, cfg)
    steps_per_epoch = num_train // global_batch  # drop_last: every step sees a full batch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factors(cfg, steps_per_epoch * cfg.optim.epochs, optimizer.param_groups)
    )
    return TrainState(cfg, model, optimizer, scheduler, init.clone(), steps_per_epoch, 0, rank, world_size)
