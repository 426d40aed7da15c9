"""One optimizer step: the forward pass (bf16 autocast on GPUs), the YOLOv2 loss with the anchors in
the graph and the warm-up tricks while the state is in warm-up, the clipped update, the schedule.

With model.multiscale on, the batch is resized to the step's input side (`input_size`): the boxes
scale with it, and so do the anchors in the loss (log a + log r), as darknet's anchors, kept in grid
cells, scale with its input. The anchor parameter stays in pixels at model.image_size.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.model.loss import yolo_loss
from trainer.train.state import TrainState


def input_size(state: TrainState) -> int:
    """The training input side at the state's step: model.image_size, or with model.multiscale a
    multiple of the stride drawn from the range, the same for `every_steps` steps (seeded by the
    run's seed and the step, so a resumed run draws the same sizes)."""
    cfg = state.cfg
    ms = cfg.model.multiscale
    if not ms.enabled:
        return cfg.model.image_size
    stride = state.model.stride
    low, high = cfg.multiscale_range
    draw = random.Random(cfg.seed * 1_000_003 + state.step // ms.every_steps)
    return draw.randrange(low // stride, high // stride + 1) * stride


def resize_batch(images: Tensor, targets: Tensor, size: int) -> tuple[Tensor, Tensor, float]:
    """(images as float [0, 1] at `size`, targets with boxes scaled, the scale)."""
    pixels = images.float() / 255
    ratio = size / images.shape[-1]
    if size == images.shape[-1]:
        return pixels, targets, 1.0
    pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
    scaled = targets.clone()
    scaled[:, 2:6] *= ratio
    return pixels, scaled, ratio


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
    pixels, targets, ratio = resize_batch(images, targets, input_size(state))
    size = len(images) // chunks
    totals: dict[str, float] = {}
    counts = None
    for first in range(0, len(images), size):
        part = targets
        if chunks > 1:  # this part's boxes, numbered from its first image
            part = targets[(targets[:, 0] >= first) & (targets[:, 0] < first + size)].clone()
            part[:, 0] -= first
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=state.amp):
            pred, log_anchors = (state.net or model)(pixels[first : first + size])
        # the loss and assignment in fp32 (with model.levels, pred holds one tensor per level)
        pred = pred.float() if isinstance(pred, Tensor) else tuple(p.float() for p in pred)
        log_anchors = log_anchors.float()
        if ratio != 1.0:
            log_anchors = log_anchors + math.log(ratio)
        terms, stats = yolo_loss(pred, log_anchors, part, model.strides, cfg.loss, soft, cluster)
        (terms["total"] / chunks).backward()
        for k, v in terms.items():
            totals[k] = totals.get(k, 0.0) + float(v.detach()) / chunks
        counts = stats["assign_counts"] if counts is None else counts + stats["assign_counts"]
    nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    return totals, {"assign_counts": counts}
