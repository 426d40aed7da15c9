"""The training loop, one for every way a run executes: alone in this process (`anchor-opt train`)
or as one rank of a Ray Train worker group (trainer.train.ray_run, `--workers N` and cluster jobs).

What differs between the two is a `Session`: the rank and world size, the device, how the model is
wrapped (DistributedDataParallel: gradients, the anchors' included, are averaged, so every rank
holds the same anchors), how batches reach the device, where checkpoints go and come from, and two
small collectives. Everything else is this file, so a 4-GPU job and a laptop run do the same steps.

Rank 0 alone writes: config and dataset summary at the start, an anchor snapshot every
`output.snapshot_every` steps and at each epoch end, status.json with progress at each snapshot,
metrics and pictures per epoch, and at the end the exported anchors, final weights and result.json.
Every rank takes part in each checkpoint report (Ray Train's report is a barrier) and collective.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import yaml
from torch import Tensor, nn

from trainer.artifacts.exports import weights_bytes, write_anchor_artifacts
from trainer.config import TrainConfig
from trainer.config_errors import schedule_warnings
from trainer.contract.layout import (
    BOXES_KEY,
    CHECKPOINT_KEY,
    CONFIG_KEY,
    DATASET_KEY,
    RESULT_KEY,
    WEIGHTS_KEY,
    metrics_key,
    snapshot_key,
)
from trainer.contract.spec import JobState
from trainer.contract.writer import RunWriter
from trainer.data.datasets import build_datasets
from trainer.model.anchors import anchor_fit
from trainer.train.batches import epoch_batches
from trainer.train.checkpoints import checkpoint_bytes, restore_checkpoint
from trainer.train.device import to_device, uses_amp
from trainer.train.evaluation import evaluate_model
from trainer.train.level_order import keep_levels_ordered
from trainer.train.reporting import (
    History,
    Progress,
    Window,
    anchors_px,
    boxes_npy,
    prune_after,
    result,
    snapshot,
)
from trainer.train.state import build_state
from trainer.train.step import train_step

log = logging.getLogger(__name__)

# Called with events: {"kind": "fetch" | "start" | "step" | "epoch" | "done", ...} (a CLI draws bars
# from them); "fetch" events follow the download of an s3:// dataset before training starts.
ProgressFn = Callable[[dict], None]


class Session:
    """One process alone: rank 0 of 1 on `device` (bf16 autocast on CUDA: trainer.train.device),
    checkpoints as `checkpoints/last.pt` in the run's storage (restored when `resume`).
    trainer.train.ray_run.RaySession is the Ray Train one."""

    rank = 0
    world_size = 1
    checkpoint_key = CHECKPOINT_KEY  # where result.json says checkpoints are

    def __init__(
        self, writer: RunWriter | None = None, resume: bool = False, device: torch.device | None = None
    ):
        self.writer, self.resume = writer, resume
        self.device = device or torch.device("cpu")
        self.amp = uses_amp(self.device)  # bf16 autocast of the forward pass

    def prepare_model(self, model: nn.Module) -> nn.Module | None:
        """The wrapper the step calls forward on, or None for the model itself."""
        return None

    def prepare_loader(self, loader: Iterable) -> Iterable:
        """This rank's batches (the sampler already shards), on the session's device."""
        return loader if self.device.type == "cpu" else to_device(loader, self.device)

    def restore(self) -> tuple[bytes, str] | None:
        """The latest checkpoint's bytes and where it is, or None to start from step 0."""
        if not (self.resume and self.writer and self.writer.exists(CHECKPOINT_KEY)):
            return None
        return self.writer.read_bytes(CHECKPOINT_KEY), self.writer.storage.uri_for(CHECKPOINT_KEY)

    def save(self, data: bytes | None, step: int, epoch: int) -> None:
        """Called by every rank at the same steps; rank 0 passes the checkpoint, the others None."""
        if data is not None and self.writer:
            self.writer.write_bytes(CHECKPOINT_KEY, data)

    def sum(self, t: Tensor) -> Tensor:
        """`t` summed over the ranks (every rank must call it at the same point)."""
        return t

    def gather(self, t: Tensor) -> list[Tensor]:
        """Every rank's `t`, in rank order (every rank must call it at the same point)."""
        return [t]


def run_loop(
    cfg: TrainConfig,
    writer: RunWriter,
    session: Session,
    progress: ProgressFn | None = None,
    fault: dict | None = None,
) -> dict | None:
    """Trains from the session's checkpoint (or step 0) to the end; returns result.json on rank 0,
    None on the other ranks. `fault` is for tests only: {"rank", "step", "marker", "delay_s",
    "times"} kills that rank after that step (0: as the attempt starts, before it reads data or
    reports anything), in the first `times` attempts (default 1; marker files record them)."""
    emit = progress or (lambda event: None)
    lead = session.rank == 0
    if lead:
        writer.start_attempt()  # first: an attempt that dies before it reports is counted too
    _maybe_crash(fault, session.rank, 0)
    fetched = lambda done, total: emit({"kind": "fetch", "done": done, "total": total})  # noqa: E731
    data = build_datasets(cfg, fetched, storage=writer.settings)
    train_set, val_set, true_shapes = data.train, data.val, data.true_shapes
    boxes_wh = train_set.boxes_wh()
    state = build_state(
        cfg, boxes_wh, len(train_set), data.num_classes, session.rank, session.world_size, writer.settings
    )
    if lead and state.pretrained is not None:
        for line in state.pretrained.lines():
            log.info("%s", line)
    state.model.to(session.device)  # before restoring, so the optimizer state lands beside its params
    state.amp = session.amp
    restored = session.restore()
    if restored:
        restore_checkpoint(state, *restored)
    state.net = session.prepare_model(state.model)
    clock = Progress(state)
    summary = data.summary()

    if lead:
        prune_after(writer, state.step, state.epoch)
        # The config the run trains with: at the start, and again when resumed (an extended run's
        # optim.epochs, the device it now runs on).
        writer.write_bytes(CONFIG_KEY, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False).encode())
        if state.step == 0:
            true = None if true_shapes is None else true_shapes.tolist()
            writer.write_json(DATASET_KEY, summary | {"class_names": data.class_names, "true_shapes": true})
            writer.write_bytes(BOXES_KEY, boxes_npy(boxes_wh))
            writer.write_json(snapshot_key(0), snapshot(state, boxes_wh, None, None))
        before = writer.status()
        writer.update_status(
            state=JobState.RUNNING,
            resumed_from_step=state.step if restored else None,
            started_at=before.started_at if before and before.started_at else time.time(),
            error=None,
            **clock.fields(),
        )
        history = History(writer)
    pretrained = state.pretrained.lines() if state.pretrained is not None else None
    for warning in schedule_warnings(cfg, len(train_set), session.world_size) if lead else []:
        log.warning("%s", warning)  # on the console of `anchor-opt train`, in a job's log
    emit({"kind": "start", "step": state.step, "total": state.total_steps,
          "init": state.init_anchors.tolist(), "dataset": summary, "pretrained": pretrained})  # fmt: skip

    started = time.monotonic()
    # Three windows over the same steps: since the last snapshot, this epoch, and this point of the
    # loss curve (a fixed grid of `snapshot_every` steps, so every point averages as many steps).
    snap_window, epoch_window, curve_window = Window(), Window(), Window()
    curve: list[dict] = []
    every = cfg.output.snapshot_every
    while not state.done:
        for images, targets in session.prepare_loader(epoch_batches(state, train_set)):
            terms, stats = train_step(state, images, targets)
            counts = stats["assign_counts"]
            snap_window.add(terms, counts, targets)
            epoch_window.add(terms, counts)
            curve_window.add(terms, counts)
            if state.step % every == 0:
                curve.append({"step": state.step, **curve_window.means()})
                curve_window = Window()
            if state.step % every == 0 or state.step % state.steps_per_epoch == 0:  # and at epoch ends
                if (perm := keep_levels_ordered(state)) is not None:
                    log.info("step %d: anchors moved level to stay ordered by area: %s", state.step, perm)
                    if snap_window.counts is not None:  # the boxes each anchor got, in its new slot
                        snap_window.counts = snap_window.counts[perm]
                all_counts = session.sum(snap_window.counts).cpu()
                if lead:
                    snap = snapshot(state, boxes_wh, snap_window, all_counts)
                    writer.write_json(snapshot_key(state.step), snap)
                    history.path.append(snap["anchors"])
                    writer.update_status(**clock.fields())
                snap_window = Window()
            emit({"kind": "step", "step": state.step, "total": state.total_steps, "losses": terms,
                  "phase": "warmup" if state.in_warmup else "main"})  # fmt: skip
            _maybe_crash(fault, session.rank, state.step)

        epoch = state.epoch  # completed epochs
        last = state.done
        if lead:
            evaluation = None
            if last or (cfg.eval.every_epochs and epoch % cfg.eval.every_epochs == 0):
                evaluation = evaluate_model(state.model, val_set, cfg)
            elapsed = time.monotonic() - started
            metrics = {
                "epoch": epoch,
                "step": state.step,
                "losses": epoch_window.means(),  # rank 0's batches
                "loss_curve": curve,  # the curve's points that closed during this epoch
                "lr": {g.get("name", str(i)): g["lr"] for i, g in enumerate(state.optimizer.param_groups)},
                "eval": evaluation,
                "images_per_s": (state.step - clock.start_step)
                * cfg.optim.batch_size
                * state.world_size
                / max(elapsed, 1e-9),
            }
            writer.write_json(metrics_key(epoch), metrics)
            history.curve.extend(curve)
            history.write_pictures(writer, state, boxes_wh, true_shapes)
            emit({"kind": "epoch", "epoch": epoch, "epochs": cfg.optim.epochs, "metrics": metrics})
        epoch_window, curve = Window(), []
        if last or epoch % cfg.output.checkpoint_every_epochs == 0:
            session.save(checkpoint_bytes(state) if lead else None, state.step, epoch)

    final = anchors_px(state)
    spread = max(float((a.cpu() - final).abs().max()) for a in session.gather(final.to(session.device)))
    if not lead:
        return None
    fit = anchor_fit(final, boxes_wh)
    artifacts = write_anchor_artifacts(
        writer, final, state.model.strides, cfg.model.image_size, fit, boxes_wh=boxes_wh
    )
    writer.write_bytes(WEIGHTS_KEY, weights_bytes(state.model, cfg, data.class_names))
    artifacts |= {"weights": WEIGHTS_KEY, "checkpoints": session.checkpoint_key}
    doc = result(state, boxes_wh, true_shapes, writer, time.monotonic() - started, artifacts, spread)
    writer.write_json(RESULT_KEY, doc)
    writer.update_status(**clock.fields())
    emit({"kind": "done", "result": doc})
    return doc


def _maybe_crash(fault: dict | None, rank: int, step: int) -> None:
    """Test-only fault injection: the process dies, as a worker lost to the machine would, in the
    first `times` attempts that get here. The pause lets Ray Train commit the checkpoint reported
    before (it polls every ~2 s)."""
    if not fault or fault["rank"] != rank or fault["step"] != step:
        return
    markers = [fault["marker"]] + [f"{fault['marker']}.{i}" for i in range(1, fault.get("times", 1))]
    for marker in markers:
        try:
            Path(marker).open("x").close()  # exclusive create: each marker lets one attempt die
            break
        except FileExistsError:
            continue
    else:
        return
    time.sleep(fault.get("delay_s", 0))
    os._exit(1)
