"""What the benchmarks share: train a config to the end without writing outputs, and score it.

Datasets are rendered once per process and reused by every run that asks for the same one.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/x.py` from a checkout

import torch  # noqa: E402

from trainer.config import TrainConfig  # noqa: E402
from trainer.config_files import load_config
from trainer.data.datasets import Datasets, build_datasets  # noqa: E402
from trainer.model.anchors import matched_log_error  # noqa: E402
from trainer.train.batches import epoch_batches
from trainer.train.device import uses_amp
from trainer.train.evaluation import evaluate_model
from trainer.train.level_order import keep_levels_ordered
from trainer.train.state import TrainState, build_state
from trainer.train.step import train_step  # noqa: E402

_DATASETS: dict = {}

# The ablation and recovery budget: the demo schedule (2000 images, batch 32, 10 epochs = 620 steps).
BUDGET = ["optim.epochs=10"]
NO_TRICKS = [
    "tricks.soft_assign.enabled=false",
    "tricks.clustering.enabled=false",
    "tricks.bn_no_shift=false",
]


def config(*overrides: str) -> TrainConfig:
    return load_config(None, [*BUDGET, *overrides])


def datasets(cfg: TrainConfig) -> Datasets:
    key = (cfg.data.model_dump_json(), cfg.model.image_size, cfg.seed)
    if key not in _DATASETS:
        _DATASETS[key] = build_datasets(cfg)
    return _DATASETS[key]


def prepare(cfg: TrainConfig, device: torch.device | None = None) -> tuple[TrainState, object]:
    """A fresh state and the training set; on `device` (default the CPU) with its autocast rule."""
    data = datasets(cfg)
    state = build_state(cfg, data.train.boxes_wh(), len(data.train), data.num_classes)
    if device is not None:
        state.model.to(device)  # before the first step: the optimizer's state is made beside the params
        state.amp = uses_amp(device)
    return state, data.train


def on(device: torch.device | None, images, targets):
    """A batch on `device` (None: as it is), so that the copy is not timed."""
    return (images, targets) if device is None else (images.to(device), targets.to(device))


def sync(device: torch.device | None) -> None:
    """Waits for the device's queued work, so that a timer around a step times the step."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def train_to_end(cfg: TrainConfig) -> tuple[TrainState, dict]:
    """Trains `cfg` fully; returns the state and a score card (recovery error, AP, time)."""
    state, train = prepare(cfg)
    started = time.perf_counter()
    while not state.done:
        for images, targets in epoch_batches(state, train):
            train_step(state, images, targets)
            if state.step % cfg.output.snapshot_every == 0:
                keep_levels_ordered(state)  # where the run loop does it: at its snapshots
    seconds = time.perf_counter() - started
    data = datasets(cfg)
    ev = evaluate_model(state.model, data.val, cfg)
    anchors = state.model.anchors.wh().detach()
    return state, {
        "error": None if data.true_shapes is None else matched_log_error(anchors, data.true_shapes),
        "ap50": ev["ap50"],
        "ap": ev["ap"],
        "voc07_ap50": ev["voc07_ap50"],  # the devkit's (trainer.train.voc_eval)
        "voc_ap50": ev["voc_ap50"],
        "seconds": seconds,
        "anchors": [[round(w, 1), round(h, 1)] for w, h in anchors.tolist()],
    }


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
