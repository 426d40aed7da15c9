"""A whole local training run, top to bottom: data, state, the loop, snapshots, metrics, result.

`train(cfg, out_dir)` is what `anchor-opt train` calls. It writes into `out_dir` (a folder, an
`s3://bucket/prefix`, or any trainer.storage Storage) the same objects a
cluster job writes under its storage prefix (trainer.outputs), and returns the result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from trainer.anchors import anchor_fit, matched_log_error, pixels_to_cells
from trainer.config import TrainConfig
from trainer.data.datasets import build_datasets
from trainer.engine import (
    TrainState,
    build_state,
    checkpoint_bytes,
    epoch_batches,
    evaluate_model,
    restore_checkpoint,
    train_step,
)
from trainer.outputs import (
    ANCHORS_PLOT_KEY,
    CHECKPOINT_KEY,
    CONFIG_KEY,
    DATASET_KEY,
    LOSSES_PLOT_KEY,
    METRICS_PREFIX,
    RESULT_KEY,
    RunWriter,
    metrics_key,
    snapshot_key,
)
from trainer.storage import Storage

log = logging.getLogger(__name__)

# Called with events: {"kind": "fetch" | "start" | "step" | "epoch" | "done", ...} (a CLI draws bars
# from them); "fetch" events follow the download of an s3:// dataset before training starts.
ProgressFn = Callable[[dict], None]


@dataclass
class _Window:
    """Loss terms and assignment counts accumulated over a span of steps."""

    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    counts: torch.Tensor | None = None

    def add(self, terms: dict[str, float], counts: torch.Tensor) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.steps += 1
        self.counts = counts.clone() if self.counts is None else self.counts + counts

    def means(self) -> dict[str, float]:
        return {k: v / max(self.steps, 1) for k, v in self.sums.items()}


def _round(rows: torch.Tensor, nd: int = 3) -> list[list[float]]:
    return [[round(float(x), nd) for x in r] for r in rows.tolist()]


def _snapshot(state: TrainState, boxes_wh: torch.Tensor, window: _Window | None) -> dict:
    wh = state.model.anchors.wh().detach()
    return {
        "step": state.step,
        "epoch": state.epoch,
        "total_steps": state.total_steps,
        "phase": "warmup" if state.in_warmup else "main",
        "image_size": state.cfg.model.image_size,
        "stride": state.model.stride,
        "anchors": _round(wh),  # (w, h) px at the input size
        "anchors_cells": _round(pixels_to_cells(wh, state.model.stride)),  # darknet's grid-cell units
        "fit": anchor_fit(wh, boxes_wh),
        "assign_counts": window.counts.tolist() if window and window.counts is not None else None,
        "losses": window.means() if window else None,
        "time": time.time(),
    }


def _write_pictures(writer: RunWriter, state: TrainState, boxes_wh: torch.Tensor, true_shapes) -> None:
    from trainer.plots import plot_anchors, plot_losses  # matplotlib only when pictures are drawn

    snaps = writer.snapshots()
    paths = torch.tensor([s["anchors"] for s in snaps]) if snaps else state.model.anchors.wh().detach()[None]
    picture = plot_anchors(
        boxes_wh.numpy(),
        paths.numpy(),
        image_size=state.cfg.model.image_size,
        true_shapes=None if true_shapes is None else true_shapes.numpy(),
    )
    writer.write_bytes(ANCHORS_PLOT_KEY, picture)
    history = [point for key in writer.keys(METRICS_PREFIX) for point in writer.read_json(key)["loss_curve"]]
    writer.write_bytes(LOSSES_PLOT_KEY, plot_losses(history, warmup_steps=state.cfg.tricks.warmup_steps))


def train(
    cfg: TrainConfig, out_dir: str | Path | Storage, resume: bool = False, progress: ProgressFn | None = None
) -> dict:
    """Trains on the configured dataset and writes every output into `out_dir`. Returns result.json.

    With `resume`, continues exactly from `out_dir`'s checkpoint when there is one; otherwise any
    earlier outputs in `out_dir` are replaced.
    """
    emit = progress or (lambda event: None)
    writer = RunWriter(out_dir)
    data = build_datasets(cfg, lambda done, total: emit({"kind": "fetch", "done": done, "total": total}))
    train_set, val_set, true_shapes = data.train, data.val, data.true_shapes
    boxes_wh = train_set.boxes_wh()
    summary = data.summary()
    state = build_state(cfg, boxes_wh, len(train_set), data.num_classes)

    if resume and writer.exists(CHECKPOINT_KEY):
        where = writer.storage.uri_for(CHECKPOINT_KEY)
        restore_checkpoint(state, writer.read_bytes(CHECKPOINT_KEY), where)
        log.info("resumed from %s at step %d", where, state.step)
    else:
        writer.clear()
        writer.write_bytes(CONFIG_KEY, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False).encode())
        writer.write_json(DATASET_KEY, summary | {"class_names": data.class_names})
        writer.write_json(snapshot_key(0), _snapshot(state, boxes_wh, None))
    start = {"step": state.step, "total": state.total_steps, "init": state.init_anchors.tolist()}
    emit({"kind": "start", **start, "dataset": summary})

    started = time.monotonic()
    start_step = state.step
    # Three windows over the same steps: since the last snapshot, this epoch, and this point of the
    # loss curve (a fixed grid of `snapshot_every` steps, so every point averages as many steps).
    snap_window, epoch_window, curve_window = _Window(), _Window(), _Window()
    curve: list[dict] = []
    while not state.done:
        for images, targets in epoch_batches(state, train_set):
            terms, stats = train_step(state, images, targets)
            snap_window.add(terms, stats["assign_counts"])
            epoch_window.add(terms, stats["assign_counts"])
            curve_window.add(terms, stats["assign_counts"])
            on_grid = state.step % cfg.output.snapshot_every == 0
            if on_grid:
                curve.append({"step": state.step, **curve_window.means()})
                curve_window = _Window()
            if on_grid or state.step % state.steps_per_epoch == 0:  # and at every epoch end
                writer.write_json(snapshot_key(state.step), _snapshot(state, boxes_wh, snap_window))
                snap_window = _Window()
            emit({"kind": "step", "step": state.step, "total": state.total_steps, "losses": terms,
                  "phase": "warmup" if state.in_warmup else "main"})  # fmt: skip

        epoch = state.epoch  # completed epochs
        last = state.done
        evaluation = None
        if last or (cfg.eval.every_epochs and epoch % cfg.eval.every_epochs == 0):
            evaluation = evaluate_model(state.model, val_set, cfg)
        elapsed = time.monotonic() - started
        metrics = {
            "epoch": epoch,
            "step": state.step,
            "losses": epoch_window.means(),
            "loss_curve": curve,  # the curve's points that closed during this epoch
            "lr": {g.get("name", str(i)): g["lr"] for i, g in enumerate(state.optimizer.param_groups)},
            "eval": evaluation,
            "images_per_s": (state.step - start_step) * cfg.optim.batch_size / max(elapsed, 1e-9),
        }
        writer.write_json(metrics_key(epoch), metrics)
        epoch_window, curve = _Window(), []
        if last or epoch % cfg.output.checkpoint_every_epochs == 0:
            writer.write_bytes(CHECKPOINT_KEY, checkpoint_bytes(state))
        _write_pictures(writer, state, boxes_wh, true_shapes)
        emit({"kind": "epoch", "epoch": epoch, "epochs": cfg.optim.epochs, "metrics": metrics})

    result = _result(state, boxes_wh, true_shapes, writer, time.monotonic() - started)
    writer.write_json(RESULT_KEY, result)
    emit({"kind": "done", "result": result})
    return result


def _result(state: TrainState, boxes_wh, true_shapes, writer: RunWriter, elapsed: float) -> dict:
    final = state.model.anchors.wh().detach()
    last_metrics = writer.read_json(metrics_key(state.epoch))
    return {
        "steps": state.step,
        "epochs": state.epoch,
        "elapsed_s": round(elapsed, 2),
        "image_size": state.cfg.model.image_size,
        "stride": state.model.stride,
        "anchors": {
            "init": _round(state.init_anchors),
            "final": _round(final),
            "final_cells": _round(pixels_to_cells(final, state.model.stride)),
            "learned": state.cfg.anchors.learn,
        },
        "fit": {"init": anchor_fit(state.init_anchors, boxes_wh), "final": anchor_fit(final, boxes_wh)},
        "eval": last_metrics["eval"],
        "synthetic": None
        if true_shapes is None
        else {
            "true_shapes": _round(true_shapes),
            "log_error_init": _matched_or_none(state.init_anchors, true_shapes),
            "log_error_final": _matched_or_none(final, true_shapes),
        },
        "artifacts": {
            "anchors_plot": ANCHORS_PLOT_KEY,
            "losses_plot": LOSSES_PLOT_KEY,
            "checkpoint": CHECKPOINT_KEY,
            "config": CONFIG_KEY,
            "dataset": DATASET_KEY,
        },
    }


def _matched_or_none(anchors: torch.Tensor, true_shapes: torch.Tensor) -> float | None:
    """Recovery error against the mixture's shapes, when there are as many anchors as shapes."""
    if anchors.shape != true_shapes.shape or len(anchors) > 8:
        return None
    return round(matched_log_error(anchors, true_shapes), 4)
