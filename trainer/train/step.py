"""One optimizer step: the forward pass (bf16 autocast on GPUs), the YOLOv2 loss with the anchors in
the graph and the warm-up tricks while the state is in warm-up, the clipped update, the schedule."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trainer.model.loss import yolo_loss
from trainer.train.state import TrainState


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
