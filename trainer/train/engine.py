"""The training engine: build a run's state, take one step, save and restore it exactly.

A run's whole state is `TrainState`: model (anchors included), optimizer, scheduler, and the global
step. Everything else is derived from the step: the epoch and the position in it, whether the
anchor warm-up is on, the data order (a permutation seeded by (seed, epoch)), and each sample's
augmentation (seeded by (seed, epoch, position)). So a checkpoint is exact: restored, a run
continues bit for bit as if it had never stopped.
"""

from __future__ import annotations

import io
import math
import pickle
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler

from trainer.config import TrainConfig
from trainer.data.batching import collate
from trainer.model.anchors import initial_anchors
from trainer.model.decode import postprocess
from trainer.model.detector import Detector
from trainer.model.loss import yolo_loss
from trainer.train.evaluation import coco_eval

# 2: RNG states as plain lists and numbers, loaded with weights_only=True (1 held numpy arrays).
CHECKPOINT_VERSION = 2


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


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The augmentation seed of the sample at `position` of `epoch`'s order."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


class EpochSampler(Sampler[tuple[int, int]]):
    """(index, augmentation seed) pairs of one rank, in a permutation seeded by (seed, epoch).

    The epoch's order is cut into global batches of `batch * world_size` positions; at each step
    rank r takes the r-th slice of `batch`. So the ranks of a step together see exactly the images
    (and augmentations: the seed follows the position) one process with the whole global batch
    would, whatever the number of workers. Starts at step `start_step` (to resume mid-epoch).
    """

    def __init__(
        self,
        size: int,
        seed: int,
        epoch: int,
        batch: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.size, self.seed, self.epoch, self.batch = size, seed, epoch, batch
        self.start_step, self.rank, self.world_size = start_step, rank, world_size
        self.steps = size // (batch * world_size)

    def positions(self) -> Iterator[int]:
        for step in range(self.start_step, self.steps):
            first = (step * self.world_size + self.rank) * self.batch
            yield from range(first, first + self.batch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=gen).tolist()
        return ((order[p], sample_seed(self.seed, self.epoch, p)) for p in self.positions())

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.batch


def epoch_batches(state: TrainState, dataset) -> DataLoader:
    """This rank's remaining batches of the state's current epoch, in their fixed order."""
    bs = state.cfg.optim.batch_size
    sampler = EpochSampler(
        len(dataset),
        state.cfg.seed,
        state.epoch,
        bs,
        state.step % state.steps_per_epoch,
        state.rank,
        state.world_size,
    )
    return DataLoader(dataset, batch_size=bs, sampler=sampler, collate_fn=collate, drop_last=True,
                      **_loader_workers(state.cfg))  # fmt: skip


def _loader_workers(cfg: TrainConfig) -> dict:
    """Worker processes decode and augment real images; the synthetic set is already in memory."""
    workers = 0 if cfg.data.is_synthetic else cfg.data.workers
    return {"num_workers": workers, "prefetch_factor": 4 if workers else None}


def train_step(
    state: TrainState, images: Tensor, targets: Tensor, chunks: int = 1
) -> tuple[dict[str, float], dict]:
    """One optimizer step on a batch. images uint8 [B, 3, S, S]; targets [M, 6] px.

    `chunks` > 1 splits the batch into that many equal parts, each with its own forward pass (so
    its own batch-norm statistics) and loss, and averages their gradients: in one process, exactly
    what `chunks` DDP ranks do with one part each. Tests use it to check the distributed step.
    Returns (loss terms as floats, statistics such as per-anchor assignment counts).
    """
    cfg, model = state.cfg, state.model
    if chunks > 1 and (state.net is not None or len(images) % chunks):
        raise ValueError(f"chunks={chunks} needs a batch it divides, and no DDP wrapper")
    model.train()
    warm = state.in_warmup
    soft = cfg.tricks.soft_assign if warm and cfg.tricks.soft_assign.enabled else None
    cluster = cfg.tricks.clustering.weight if warm and cfg.tricks.clustering.enabled else 0.0

    state.optimizer.zero_grad(set_to_none=True)
    size = len(images) // chunks
    totals: dict[str, float] = {}
    counts = None
    for first in range(0, len(images), size):
        part = targets
        if chunks > 1:  # this part's boxes, numbered from its first image
            part = targets[(targets[:, 0] >= first) & (targets[:, 0] < first + size)].clone()
            part[:, 0] -= first
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=state.amp):
            pred, log_anchors = (state.net or model)(images[first : first + size].float() / 255)
        pred, log_anchors = pred.float(), log_anchors.float()  # the loss and assignment in fp32
        terms, stats = yolo_loss(pred, log_anchors, part, model.stride, cfg.loss, soft, cluster)
        (terms["total"] / chunks).backward()
        for k, v in terms.items():
            totals[k] = totals.get(k, 0.0) + float(v.detach()) / chunks
        counts = stats["assign_counts"] if counts is None else counts + stats["assign_counts"]
    nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    return totals, {"assign_counts": counts}


@torch.no_grad()
def evaluate_model(model: Detector, dataset, cfg: TrainConfig, batch_size: int = 32) -> dict:
    """COCO and VOC07 metrics of the model on `dataset` (eval mode: running BN statistics).

    Predictions are mapped back to each original image and scored against its original boxes,
    crowd and difficult ones included as ignored (trainer.train.evaluation)."""
    model.eval()
    device = next(model.parameters()).device
    gts, dets, sizes = [], [], []
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate, **_loader_workers(cfg))
    for images, _ in loader:
        pred, log_anchors = model(images.to(device).float() / 255)
        ev = cfg.eval
        found = postprocess(pred, log_anchors, model.stride, ev.conf_threshold, ev.nms_iou, ev.max_detections)
        for d in found:
            i = len(gts)
            gt = dataset.ground_truth(i)
            sizes.append(gt.pop("size"))
            gts.append(gt)
            det = {k: v.cpu().numpy() for k, v in d.items()}
            det["boxes"] = dataset.to_original(i, det["boxes"])
            dets.append(det)
    return coco_eval(gts, dets, model.num_classes, sizes)


# --- checkpoints ---------------------------------------------------------------------------------


def _rng_state() -> dict:
    """Every global RNG's state as a tensor or plain lists and numbers, so that the checkpoint loads
    with `torch.load(weights_only=True)` (numpy's state holds an ndarray, which would need pickle)."""
    bit_generator, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": str(bit_generator),
            "key": [int(k) for k in key],  # 624 uint32 words of MT19937
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    n, p = s["numpy"], s["python"]
    key = np.asarray(n["key"], dtype=np.uint32)
    np.random.set_state((n["bit_generator"], key, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def checkpoint_bytes(state: TrainState) -> bytes:
    """Everything that shapes the rest of the run: network, anchors, optimizer and scheduler state,
    the step (so the warm-up position and data order), RNGs and the config, as one object to store.
    Only tensors, containers and plain values: `restore_checkpoint` loads it with weights_only=True."""
    payload = {
        "version": CHECKPOINT_VERSION,
        "step": state.step,
        "world_size": state.world_size,  # the step count's meaning: steps per epoch depend on it
        "config": state.cfg.model_dump(mode="json"),
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "init_anchors": state.init_anchors,
        "anchors_px": state.model.anchors.wh().detach(),  # readable without rebuilding the model
        "warmup": {"steps": state.cfg.tricks.warmup_steps, "in_warmup": state.in_warmup},
        "rng": _rng_state(),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def restore_checkpoint(state: TrainState, data: bytes, where: str = "checkpoint") -> TrainState:
    """Restores `state` (built from the same config) in place from `checkpoint_bytes` output.
    `where` names the checkpoint in errors (its path or URI)."""
    payload = _load_payload(data, where)
    saved = TrainConfig.model_validate(payload["config"])
    if saved != state.cfg:
        diff = _config_diff(saved.model_dump(), state.cfg.model_dump())
        raise ValueError(f"{where}: checkpoint was made with a different config ({'; '.join(diff[:5])})")
    saved_world = payload.get("world_size", 1)
    if saved_world != state.world_size:
        raise ValueError(
            f"{where}: checkpoint was made by {saved_world} worker(s), this run has {state.world_size}; "
            "resume with the same number of workers"
        )
    state.model.load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.scheduler.load_state_dict(payload["scheduler"])
    state.init_anchors = payload["init_anchors"]
    state.step = payload["step"]
    _set_rng_state(payload["rng"])
    return state


def _load_payload(data: bytes, where: str) -> dict:
    """The checkpoint's contents, unpickled with `weights_only=True`: tensors, containers and plain
    values only, so a checkpoint someone else wrote into the store cannot run code on a worker."""
    again = "resuming is not possible: start the run again (anchor-opt train --fresh, or submit it again)"
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{where}: refused: it holds objects other than tensors and plain values, and loading them could "
            f"run code ({reason[:200]}). Checkpoints of version 1 (numpy RNG state) are refused so too; "
            f"{again}"
        ) from None
    except Exception as exc:  # a truncated or foreign file: the zip reader's RuntimeError, EOFError, ...
        reason = f"{type(exc).__name__}: {exc}"
        raise ValueError(f"{where}: not a readable checkpoint ({reason[:200]}); {again}") from None
    version = payload.get("version") if isinstance(payload, dict) else None
    if version != CHECKPOINT_VERSION:
        raise ValueError(f"{where}: checkpoint version {version} is not {CHECKPOINT_VERSION}; {again}")
    return payload


def _config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} in checkpoint, {vb!r} now")
    return out
