"""What a run's rank 0 writes about it: anchor snapshots, progress, pictures and the result.

The documents follow trainer.contract.documents (AnchorSnapshot, JobStatus, JobResult); the keys are
trainer.contract.writer'. Everything here is computed on CPU copies, so it works the same whatever device
the model trains on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from trainer.contract.layout import (
    ANCHORS_PLOT_KEY,
    CONFIG_KEY,
    DATASET_KEY,
    LOSSES_PLOT_KEY,
    METRICS_PREFIX,
    SNAPSHOT_PREFIX,
    metrics_key,
    number_of,
)
from trainer.contract.writer import RunWriter
from trainer.model.anchors import anchor_fit, matched_log_error, pixels_to_cells
from trainer.model.levels import anchor_levels, anchor_strides
from trainer.train.state import TrainState


def anchors_px(state: TrainState) -> Tensor:
    """The anchors (w, h) in pixels at the input size, detached, on CPU."""
    return state.model.anchors.wh().detach().float().cpu()


def level_fields(state: TrainState, num: int) -> dict:
    """`stride` (one level's; None with several, as in `anchor-opt fit`'s report: one int would be
    misread), `strides` (each level's, finest first) and `levels` (each anchor's level index,
    trainer.model.levels)."""
    strides = state.model.strides
    one = strides[0] if len(strides) == 1 else None
    return {"stride": one, "strides": strides, "levels": anchor_levels(num, len(strides))}


def cells(wh: Tensor, state: TrainState) -> Tensor:
    """[K, 2] px -> grid cells, each anchor divided by the stride of its own level."""
    strides = anchor_strides(len(wh), state.model.strides)
    return pixels_to_cells(wh, torch.tensor(strides, dtype=wh.dtype)[:, None])


def _round(rows: Tensor, nd: int = 3) -> list[list[float]]:
    return [[round(float(x), nd) for x in r] for r in rows.tolist()]


@dataclass
class Window:
    """Loss terms, assignment counts and the (augmented) boxes seen over a span of steps."""

    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    counts: Tensor | None = None
    boxes: list[Tensor] = field(default_factory=list)

    def add(self, terms: dict[str, float], counts: Tensor, targets: Tensor | None = None) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.steps += 1
        counts = counts.detach().float()
        self.counts = counts.clone() if self.counts is None else self.counts + counts
        if targets is not None and len(targets):
            self.boxes.append((targets[:, 4:6] - targets[:, 2:4]).detach().float().cpu())

    def means(self) -> dict[str, float]:
        return {k: v / max(self.steps, 1) for k, v in self.sums.items()}

    def seen_wh(self) -> Tensor:
        return torch.cat(self.boxes) if self.boxes else torch.zeros(0, 2)


def snapshot(state: TrainState, boxes_wh: Tensor, window: Window | None, counts: Tensor | None) -> dict:
    """anchors/<step>.json. `fit` is measured on the augmented boxes this rank trained on since the
    previous snapshot (none at step 0), `fit_dataset` on every training box without augmentation;
    `counts` are the boxes per anchor over every rank's batches since the previous snapshot."""
    wh = anchors_px(state)
    return {
        "step": state.step,
        "epoch": state.epoch,
        "total_steps": state.total_steps,
        "phase": "warmup" if state.in_warmup else "main",
        "image_size": state.cfg.model.image_size,
        **level_fields(state, len(wh)),
        "anchors": _round(wh),  # (w, h) px at the input size
        "anchors_cells": _round(cells(wh, state)),  # darknet's grid-cell units, each at its level
        "fit": anchor_fit(wh, window.seen_wh() if window else torch.zeros(0, 2)),
        "fit_dataset": anchor_fit(wh, boxes_wh),
        "assign_counts": None if counts is None else [round(float(c), 3) for c in counts.tolist()],
        "losses": window.means() if window else None,
        "time": time.time(),
    }


class Progress:
    """Throughput and ETA of this attempt, for status.json."""

    def __init__(self, state: TrainState):
        self.state, self.start_step, self.start = state, state.step, time.monotonic()

    def fields(self) -> dict:
        s = self.state
        done = s.step - self.start_step
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = done / elapsed if done else None  # steps per second
        global_batch = s.cfg.optim.batch_size * s.world_size
        return {
            "step": s.step,
            "total_steps": s.total_steps,
            "epoch": s.epoch,
            "epochs": s.cfg.optim.epochs,
            "phase": "warmup" if s.in_warmup else "main",
            "workers": s.world_size,
            "images_per_s": round(rate * global_batch, 2) if rate else None,
            "eta_s": round((s.total_steps - s.step) / rate, 1) if rate else None,
        }


class History:
    """The anchors' path and the loss curve so far, for the pictures: read from storage once (a
    resumed run continues its predecessor's), then extended in memory as the run writes more."""

    def __init__(self, writer: RunWriter):
        self.path = [s["anchors"] for s in writer.snapshots()]
        self.curve = [p for key in writer.keys(METRICS_PREFIX) for p in writer.read_json(key)["loss_curve"]]

    def write_pictures(self, writer: RunWriter, state: TrainState, boxes_wh: Tensor, true_shapes) -> None:
        # matplotlib only when pictures are drawn
        from trainer.artifacts.plots import plot_anchors, plot_losses

        paths = torch.tensor(self.path) if self.path else anchors_px(state)[None]
        levels = level_fields(state, paths.shape[1])
        picture = plot_anchors(
            boxes_wh.numpy(),
            paths.numpy(),
            image_size=state.cfg.model.image_size,
            true_shapes=None if true_shapes is None else true_shapes.numpy(),
            levels=levels["levels"],
            strides=levels["strides"],
        )
        writer.write_bytes(ANCHORS_PLOT_KEY, picture)
        writer.write_bytes(
            LOSSES_PLOT_KEY,
            plot_losses(self.curve, warmup_steps=_warmup_end(state)),
        )


MAX_PICTURE_BOXES = 50_000  # a density picture looks the same from a fixed sample of this size


def boxes_npy(boxes_wh: Tensor) -> bytes:
    """boxes.npy: the training boxes (w, h) for pictures drawn elsewhere (the service has no torch)."""
    import io

    import numpy as np

    boxes = boxes_wh.float().cpu()
    if len(boxes) > MAX_PICTURE_BOXES:
        keep = torch.randperm(len(boxes), generator=torch.Generator().manual_seed(0))[:MAX_PICTURE_BOXES]
        boxes = boxes[keep.sort().values]
    buffer = io.BytesIO()
    np.save(buffer, boxes.numpy().astype(np.float32), allow_pickle=False)
    return buffer.getvalue()


def prune_after(writer: RunWriter, step: int, epoch: int) -> None:
    """Removes snapshots after `step` and metrics after `epoch`: left by an attempt that failed after
    the checkpoint this one resumes from. The replay rewrites them, so pollers never see a step twice."""
    for key in writer.keys(SNAPSHOT_PREFIX):
        if number_of(key) > step:
            writer.storage.delete(key)
    for key in writer.keys(METRICS_PREFIX):
        if number_of(key) > epoch:
            writer.storage.delete(key)


def result(
    state: TrainState,
    boxes_wh: Tensor,
    true_shapes: Tensor | None,
    writer: RunWriter,
    elapsed: float,
    artifacts: dict[str, str],
    rank_spread: float,
) -> dict:
    """result.json: init and final anchors, fit, last evaluation, artifact keys, DDP agreement."""
    final = anchors_px(state)
    last_metrics = writer.read_json(metrics_key(state.epoch))
    return {
        "steps": state.step,
        "epochs": state.epoch,
        "elapsed_s": round(elapsed, 2),
        "image_size": state.cfg.model.image_size,
        **level_fields(state, len(final)),
        "anchors": {
            "init": _round(state.init_anchors),
            "final": _round(final),
            "final_cells": _round(cells(final, state)),
            "learned": state.cfg.anchors.learn,
        },
        "fit": {"init": anchor_fit(state.init_anchors, boxes_wh), "final": anchor_fit(final, boxes_wh)},
        "eval": last_metrics["eval"],
        # What model.pretrained loaded (trainer.model.pretrained), None without one.
        "pretrained": None
        if state.pretrained is None
        else {
            "source": state.pretrained.source,
            "kind": state.pretrained.kind,
            "loaded": len(state.pretrained.loaded),
            "skipped": state.pretrained.skipped,
            "notes": state.pretrained.notes,
        },
        "synthetic": None
        if true_shapes is None
        else {
            "true_shapes": _round(true_shapes),
            "log_error_init": _matched_or_none(state.init_anchors, true_shapes),
            "log_error_final": _matched_or_none(final, true_shapes),
        },
        # Every rank's final anchors against rank 0's: DDP keeps them equal, so this is 0.0.
        "ddp": {"workers": state.world_size, "anchor_rank_spread": rank_spread},
        "artifacts": {
            "anchors_plot": ANCHORS_PLOT_KEY,
            "losses_plot": LOSSES_PLOT_KEY,
            "config": CONFIG_KEY,
            "dataset": DATASET_KEY,
            **artifacts,
        },
    }


def _matched_or_none(anchors: Tensor, true_shapes: Tensor) -> float | None:
    """Recovery error against the mixture's shapes, when there are as many anchors as shapes."""
    if anchors.shape != true_shapes.shape or len(anchors) > 16:
        return None
    return round(matched_log_error(anchors, true_shapes), 4)


def _warmup_end(state: TrainState) -> int | None:
    """Where the loss picture marks the end of the warm-up tricks: nowhere when they are off, or
    when the warm-up does not end within the run (it would stand past the last step)."""
    tricks = state.cfg.tricks
    on = tricks.soft_assign.enabled or tricks.clustering.enabled
    return tricks.warmup_steps if on and 0 < tricks.warmup_steps < state.total_steps else None
