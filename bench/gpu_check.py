"""The GPU check: Darknet-19 at 416 px on one NVIDIA GPU, in bf16, in one process and on Ray Train.

Not run by the tests (they have no GPU). Run it from a checkout after `make install` (or `make test`):

    .venv/bin/python bench/gpu_check.py

It expects one CUDA GPU with bf16 (Ampere or later) and a CUDA build of torch. The Makefile installs
torch==2.13.0 from PyPI: its Linux x86_64 wheel is the CUDA build (the CPU wheel comes only from
PyTorch's CPU index); `python -c "import torch; print(torch.version.cuda)"` says which one is there.
Without CUDA it exits with status 2 and says why. Sized to end well within 5 minutes on an H200
(Darknet-19 at 416 in bf16 is roughly 1000-2000 images/s there); most of the time is rendering the
synthetic images on the CPU (~15-30 ms each, one core per set) and starting Ray. What it measures:

- local_img_s: the training loop (trainer.train.loop, as `anchor-opt train --device cuda` runs it)
  alone in this process: images over the steady-state steps of one epoch of 40 steps of 32 images,
  from the anchor snapshot of step 10 to the one of step 40 (steps 1-10, the warm-up, not timed;
  the time between two snapshots is between their files' writes).
- ray_img_s: the same run on Ray Train with one GPU worker (what `anchor-opt train --workers 1
  --gpus-per-worker 1` starts: a local Ray, trainer.train.driver.train_to_end), measured alike.
- step_efficiency, anchor_overhead: bench/step_efficiency.py's and bench/anchor_overhead.py's
  steady-state ratios (their definitions, pairs and warm-up steps), at darknet19/416 on the GPU.
- eval_s: trainer.train.evaluation.evaluate_model on 5,000 synthetic validation images with the
  model the local run trained (forward passes, decoding and COCOeval; rendering them not counted:
  they are rendered beforehand by a pool of processes, the same images build_synthetic renders).

Phases and their times go to stderr; the final line, on stdout:

    gpu_check: local_img_s=.. ray_img_s=.. step_efficiency=.. anchor_overhead=.. eval_s=..
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
from anchor_overhead import timed_ratio
from harness import datasets
from step_efficiency import measure

from trainer.artifacts.exports import load_weights
from trainer.config import TrainConfig
from trainer.config_files import load_config
from trainer.contract.layout import WEIGHTS_KEY, snapshot_key
from trainer.contract.spec import JobState, Resources
from trainer.contract.storage import StorageSettings
from trainer.contract.writer import RunWriter
from trainer.data.synthetic import SyntheticShapes, render_image
from trainer.train.evaluation import evaluate_model

MODEL = ["model.backbone=darknet19", "model.image_size=416", "optim.batch_size=32"]
# The loop runs: one epoch of 40 steps, a snapshot every 5; timed from step 10 to step 40.
STEPS, EVERY, FROM_STEP = 40, 5, 10
LOOP = [f"data.synthetic.num_train={STEPS * 32}", "data.synthetic.num_val=8", "optim.epochs=1",
        f"output.snapshot_every={EVERY}", "eval.every_epochs=0"]  # fmt: skip
# The step benches: the main phase (hard assignment), one batch or two of 32 images.
BENCH = [
    "tricks.warmup_steps=0",
    "optim.epochs=100",
    "data.synthetic.num_train=64",
    "data.synthetic.num_val=8",
]
EVAL_IMAGES = 5000


def log(message: str, started: float) -> None:
    print(f"[{time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)


def fail(message: str) -> None:
    print(f"gpu_check: {message}", file=sys.stderr)
    sys.exit(2)


def check_cuda() -> torch.device:
    if not torch.cuda.is_available():
        built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        fail(
            f"CUDA is not available (torch {torch.__version__}, {built}): this check needs one NVIDIA "
            "GPU and a CUDA build of torch"
        )
    if not torch.cuda.is_bf16_supported():
        fail(f"{torch.cuda.get_device_name(0)} has no bf16: training on a GPU runs in bf16 autocast")
    return torch.device("cuda", 0)


def loop_images_per_s(out: Path, batch: int = 32, steps: tuple[int, int] = (FROM_STEP, STEPS)) -> float:
    """Images per second between the anchor snapshots of two steps of a finished run in `out`."""
    first, last = (out / snapshot_key(step) for step in steps)
    seconds = (last.stat().st_mtime_ns - first.stat().st_mtime_ns) / 1e9
    return (steps[1] - steps[0]) * batch / seconds


def train_local(cfg: TrainConfig, out: Path) -> float:
    from trainer.train.local_run import train

    train(cfg, out)
    return loop_images_per_s(out, cfg.optim.batch_size)


def train_ray(cfg: TrainConfig, out: Path, gpus: float = 1) -> float:
    """The run through Ray Train on one worker with `gpus` GPUs, on a local Ray started here."""
    from trainer.train.driver import train_to_end
    from trainer.train.ray_run import ensure_ray

    cpus = max(1, min(8, (os.cpu_count() or 2) - 1))
    ensure_ray(log_to_driver=False)
    writer = RunWriter(out, StorageSettings())
    resources = Resources(workers=1, cpus_per_worker=cpus, gpus_per_worker=gpus, max_failures=0)
    status = train_to_end(writer, cfg, resources, writer.settings)
    if status.state != JobState.SUCCEEDED:
        fail(f"the Ray run {status.state}: {status.error}")
    return loop_images_per_s(out, cfg.optim.batch_size)


class RenderedShapes(SyntheticShapes):
    """The synthetic validation set build_synthetic renders (seed + 10_000), rendered by a process
    pool: each image is a function of (seed, index) alone, so these are the same images."""

    def __init__(self, cfg: TrainConfig, num_images: int, processes: int):
        size, syn = cfg.model.image_size, cfg.data.synthetic
        self.cfg, self.image_size, self.seed, self.hflip = syn, size, cfg.seed + 10_000, 0.0
        draw = partial(render_image, syn, size, self.seed)
        context = multiprocessing.get_context("forkserver")  # no fork of a process that holds CUDA
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            rendered = list(pool.map(draw, range(num_images), chunksize=32))
        self.images = torch.from_numpy(np.stack([im for im, _ in rendered])).permute(0, 3, 1, 2).contiguous()
        self.targets = [torch.from_numpy(t) for _, t in rendered]
        self.class_names = ["rectangle", "ellipse", "frame"][: syn.num_classes]


def eval_seconds(weights: bytes, val: SyntheticShapes, device: torch.device) -> float:
    model, cfg, _ = load_weights(weights)
    model.to(device)
    started = time.perf_counter()
    evaluate_model(model, val, cfg)
    return time.perf_counter() - started


def main() -> None:
    started = time.monotonic()
    device = check_cuda()
    log(
        f"{torch.cuda.get_device_name(device)}, torch {torch.__version__} (CUDA {torch.version.cuda})",
        started,
    )
    cfg = load_config(None, [*MODEL, *LOOP, "device=cuda"])
    processes = max(1, len(os.sched_getaffinity(0)) - 1)
    val = RenderedShapes(cfg, EVAL_IMAGES, processes)
    log(f"rendered {EVAL_IMAGES} validation images at 416 px on {processes} processes", started)

    bench = load_config(None, [*MODEL, *BENCH])
    datasets(bench)  # rendered once for both benches
    _, _, step_efficiency = measure(bench, device)
    log(f"step efficiency {step_efficiency:.3f}", started)
    _, _, anchor_overhead = timed_ratio(
        bench, load_config(None, [*MODEL, *BENCH, "anchors.learn=false"]), device
    )
    log(f"anchor overhead {anchor_overhead:.3f}", started)

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        local = train_local(cfg, Path(folder) / "local")
        log(f"one process: {local:.0f} images/s", started)
        eval_s = eval_seconds((Path(folder) / "local" / WEIGHTS_KEY).read_bytes(), val, device)
        log(f"evaluation of {EVAL_IMAGES} images: {eval_s:.1f} s", started)
        del val
        ray_img_s = train_ray(cfg, Path(folder) / "ray")
        log(f"Ray Train, one GPU worker: {ray_img_s:.0f} images/s", started)
    print(
        f"gpu_check: local_img_s={local:.0f} ray_img_s={ray_img_s:.0f} step_efficiency={step_efficiency:.3f} "
        f"anchor_overhead={anchor_overhead:.3f} eval_s={eval_s:.1f}"
    )


if __name__ == "__main__":
    main()
