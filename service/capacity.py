"""What a job needs against what this service can give it, checked at submit so that a job that can
never run is refused before it takes a place in the queue (service.policy.check_job_spec calls
`check_capacity`; its ValueError names the field and becomes a 422).

1. The operator's limits (`settings.limits`, service.settings.JobLimits), everywhere: image size,
   synthetic images, epochs, batch size, workers, CPUs and GPUs per worker, GPUs per job.
2. The workers' CPUs and GPUs. On the embedded Ray head (no `ray_address`) against this machine:
   Ray would keep a job it can never place pending for ever, holding a running slot. A named cluster
   may autoscale, so there the limits of 1 are the bound, and a job Ray still cannot place ends
   FAILED after `limits.resource_wait_s` (trainer.train.ray_resources).
3. Memory: `estimate_memory`'s figure per worker against the machine (embedded head) or against
   `limits.worker_memory_gb` (a cluster's worker).

Torch-free, like the rest of the service: the model's size is counted from its architecture here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.contract.spec import RESOURCE_WAIT_ENV, JobSpec

if TYPE_CHECKING:
    from service.settings import JobLimits, ServiceSettings

GiB, MiB = 1 << 30, 1 << 20

# The estimate's constants; the measurements behind them are in estimate_memory's docstring.
WORKER_PROCESS = 768 * MiB  # python, torch, Ray and this project imported (the Ray worker: 793 MiB)
# Bytes per input pixel of one image kept for the backward pass: the activations torch saved (counted
# with saved_tensors_hooks: tiny 91 at width 1, 55 at 0.5, 163 at 2, 308 at 4; darknet19 956-971),
# measured as 106-136 (tiny) and 940 (darknet19) by the RSS growth from batch 8 to 32, plus margin.
TRAIN_BYTES_PER_PX = {"tiny": 150.0, "darknet19": 1300.0}
EVAL_BYTES_PER_PX = {"tiny": 64.0, "darknet19": 450.0}  # no grad: a layer or two at a time
INPUT_BYTES_PER_PX = 24.0  # the batch as float32 and scaled (2 x 3 channels x 4 bytes)
HEAD_COPIES = 4  # the raw predictions [B, A, H, W, 5 + C] in fp32: output, its gradient, loss temporaries
EVAL_BATCH = 32  # trainer.train.evaluation.evaluate_model
# The model's parameters, in fp32 copies: weights, gradients, two AdamW moments, DDP's gradient
# buckets, and a checkpoint's serialised state (weights and moments, and BytesIO's copy of them).
# darknet19 (51 M parameters) measured 7.1 copies in one process, where DDP adds none.
MODEL_COPIES = 9
# A synthetic set is rendered as a list of images, stacked, then made channel-first: three copies of
# the training set at once (trainer.data.synthetic); 2200 images at 256 px measured 2.1.
RENDER_COPIES = 3
DETECTION_BYTES = 64  # per kept detection of a validation image (box, score, label) until scored
REAL_DATA = 256 * MiB  # decoding, augmentation, an 80-class evaluation: coco128 took 126 MiB more
REAL_CLASSES = 100  # a real dataset's classes are unknown until it is read; COCO has 80, VOC 20
# One forked DataLoader worker beyond the pages it shares (coco128's PSS did not grow measurably with 2).
LOADER_PROCESS = 128 * MiB
LOADER_PREFETCH = 4  # batches each loader worker prepares ahead (trainer.train.batches)
# The embedded head also runs the job's driver and Ray Train's controller and actors (~1 GiB: a whole
# 2-worker job measured 2.2 GiB PSS, docs/notes/2026-11-24-ray-train-2.60.md), and its own daemons
# and this service.
JOB_PROCESSES = 1 * GiB
HEAD_RESERVE = 1 * GiB


@dataclass(frozen=True)
class Part:
    name: str
    bytes: float
    fields: tuple[str, ...]  # what drives it, the main knob first


@dataclass(frozen=True)
class MemoryEstimate:
    """Host memory one Ray Train worker of a job needs at its peak, in parts."""

    parts: tuple[Part, ...]

    @property
    def per_worker(self) -> float:
        return sum(p.bytes for p in self.parts)

    def largest(self) -> Part:
        return max((p for p in self.parts if p.fields), key=lambda p: p.bytes)

    def describe(self) -> str:
        shown = sorted(self.parts, key=lambda p: -p.bytes)
        return ", ".join(f"{p.name} {_gib(p.bytes)}" for p in shown if p.bytes >= 0.05 * GiB)


def estimate_memory(spec: JobSpec) -> MemoryEstimate:
    """The peak host memory of one of `spec`'s workers, conservatively: over, not under. Each rank
    builds its own datasets and model, so this is per worker.

    Measured 2026-12-01 on a 2-core machine (torch 2.13 CPU, Ray 2.60) with `anchor-opt train` on the
    synthetic set, one epoch, peak RSS from wait4 (bench/memory_estimate.py reruns them):

        tiny, 80 images, batch 8 / 32:      128 px 499 / 550 MiB, 256 px 592 / 769, 512 px 903 / 1540
        tiny, 2200 images, 256 px, batch 8: 1446 MiB
        tiny width 4, 256 px, batch 8:      832 MiB
        darknet19, 24 images, 128 px:       batch 2 1895 MiB, batch 8 1983 MiB
        a Ray Train worker (a 1-worker job, 256 px, batch 8): 793 MiB; the same run alone 592 MiB
        coco128 (80 classes, 640x480 JPEGs), 256 px, batch 8: 718 MiB PSS, 0 or 2 loader workers

    This estimate is 1.35 to 1.65 times those in-process peaks, 1.15 times the Ray worker's and 2.0
    times coco128's: it counts a Ray worker's process (a run alone lacks ~200 MiB of Ray) and sums
    parts that peak at different times (rendering, then training, then evaluation).

    Not counted: `data.cache_images` of a real dataset (S * S * 3 bytes per image, but how many
    images there are is known only once the dataset is read), and on GPU workers the device's own
    memory (not measured here: no GPU; the batch's activations are counted in host memory instead)."""
    s, batch = spec.model.image_size, spec.optim.batch_size
    px = s * s
    backbone, width = spec.model.backbone, spec.model.width
    synthetic = spec.data.is_synthetic
    classes = spec.data.synthetic.num_classes if synthetic else REAL_CLASSES
    scale = max(0.6, width) if backbone == "tiny" else 1.0  # tiny's channels grow with width, at least 8
    # The raw predictions of every level (one level: the backbone's stride).
    head = HEAD_COPIES * spec.anchors.num * (5 + classes) * 4 * sum(1 / st**2 for st in spec.strides)
    shape = ("optim.batch_size", "model.image_size", "model.backbone", "model.width")
    train_px = px
    if spec.model.multiscale.enabled:  # training steps run at up to the range's largest side
        train_px = max(px, spec.multiscale_range[1] ** 2)
        shape = (*shape, "model.multiscale.max_size")
    train = batch * train_px * (TRAIN_BYTES_PER_PX[backbone] * scale + INPUT_BYTES_PER_PX + head)
    parts = [
        Part("process", WORKER_PROCESS, ()),
        Part("model", MODEL_COPIES * 4 * model_parameters(spec, classes), ("model.backbone", "model.width")),
    ]
    if synthetic:
        images = spec.data.synthetic.num_train + spec.data.synthetic.num_val
        evaluated = min(EVAL_BATCH, spec.data.synthetic.num_val)
        fields = ("data.synthetic.num_train", "data.synthetic.num_val", "model.image_size")
        parts.append(Part("synthetic images", RENDER_COPIES * images * px * 3, fields))
        detections = spec.data.synthetic.num_val * spec.eval.max_detections * DETECTION_BYTES
        parts.append(Part("detections", detections, ("eval.max_detections", "data.synthetic.num_val")))
    else:
        evaluated = EVAL_BATCH
        parts.append(Part("image decoding", REAL_DATA, ()))
        loaders = spec.data.workers * (LOADER_PROCESS + LOADER_PREFETCH * batch * px * 3 * 2)
        parts.append(Part("data loader workers", loaders, ("data.workers", "optim.batch_size")))
    evaluation = evaluated * px * (EVAL_BYTES_PER_PX[backbone] * scale + INPUT_BYTES_PER_PX + head)
    parts.append(Part("activations", max(train, evaluation), shape))  # training and evaluation take turns
    return MemoryEstimate(tuple(parts))


def model_parameters(spec: JobSpec, classes: int) -> int:
    """The detector's parameter count (trainer.model.detector: conv weights, batch-norm scale and shift, the
    head's 1x1 conv, the anchors; with model.levels the neck of trainer.model.neck and a head per level),
    from its architecture."""
    if spec.model.backbone == "tiny":
        c = [max(8, int(n * spec.model.width)) for n in (16, 32, 64, 64, 128, 128)]
        layers = [(3, 3, c[0])] + [(3, a, b) for a, b in zip(c, c[1:], strict=False)]
        out, maps, neck = c[-1], {8: c[3], 16: c[5]}, max(8, int(64 * spec.model.width))
    else:
        layers = [(k, a, b) for k, a, b in _DARKNET19]
        out, maps, neck = 1024, {8: 256, 16: 512, 32: 1024}, 256
    a, per_anchor = spec.anchors.num, 5 + classes
    if spec.model.levels is not None:  # the neck: stride-2 layers past the deepest map, lateral, smooth
        deepest = max(maps)
        while deepest < max(spec.model.levels):
            layers.append((3, maps[deepest], maps[deepest]))
            maps[deepest * 2] = maps[deepest]
            deepest *= 2
        layers += [(1, maps[s], neck) for s in spec.model.levels] + [(3, neck, neck)] * len(spec.model.levels)
        out = neck
    convs = sum(k * k * cin * cout + 2 * cout for k, cin, cout in layers)
    heads = len(spec.strides) * (out * a * per_anchor + a * per_anchor + 2 * a)  # 1x1 conv, bias, BN scale
    return convs + heads + 2 * spec.total_anchors  # and the anchors


# Darknet-19 with YOLOv2's detection layers: (kernel, in, out) of every conv
# (trainer.model.detector.Darknet19).
_DARKNET19 = [
    (3, 3, 32), (3, 32, 64), (3, 64, 128), (1, 128, 64), (3, 64, 128), (3, 128, 256), (1, 256, 128),
    (3, 128, 256), (3, 256, 512), (1, 512, 256), (3, 256, 512), (1, 512, 256), (3, 256, 512),
    (3, 512, 1024), (1, 1024, 512), (3, 512, 1024), (1, 1024, 512), (3, 512, 1024), (3, 1024, 1024),
    (3, 1024, 1024), (1, 512, 64), (3, 1024 + 64 * 4, 1024),
]  # fmt: skip


# --- the checks ------------------------------------------------------------------------------------


def check_capacity(spec: JobSpec, settings: ServiceSettings) -> None:
    """ValueError naming the field when `spec` asks for more than this service can give one job."""
    limits = settings.limits
    check_limits(spec, limits)
    estimate = estimate_memory(spec)
    if settings.ray_address is None:
        cpus = settings.ray_num_cpus or os.cpu_count() or 1
        gpus = limits.embedded_gpus if limits.embedded_gpus is not None else detected_gpus()
        memory = limits.embedded_memory_gb * GiB if limits.embedded_memory_gb else machine_memory()
        check_local_capacity(spec, cpus, gpus)
        needed = spec.resources.workers * estimate.per_worker + JOB_PROCESSES
        if needed > memory - HEAD_RESERVE:
            _refuse_memory(
                estimate,
                f"{spec.resources.workers} worker(s) x {_gib(estimate.per_worker)} and "
                f"{_gib(JOB_PROCESSES)} for the job's driver is more than the {_gib(memory - HEAD_RESERVE)} "
                f"this machine's local Ray can give a job (of {_gib(memory)}, {_gib(HEAD_RESERVE)} stay "
                "for Ray and this service)",
            )
    elif estimate.per_worker > limits.worker_memory_gb * GiB:
        _refuse_memory(
            estimate,
            f"more than the {limits.worker_memory_gb:g} GiB a worker may use on this cluster "
            "(limits.worker_memory_gb)",
        )


def check_limits(spec: JobSpec, limits: JobLimits) -> None:
    r = spec.resources
    bounds = [
        ("model.image_size", spec.model.image_size, limits.max_image_size, "max_image_size"),
        (
            "model.multiscale.max_size",
            spec.multiscale_range[1] if spec.model.multiscale.enabled else 0,
            limits.max_image_size,
            "max_image_size",
        ),
        ("optim.epochs", spec.optim.epochs, limits.max_epochs, "max_epochs"),
        ("optim.batch_size", spec.optim.batch_size, limits.max_batch_size, "max_batch_size"),
        ("resources.workers", r.workers, limits.max_workers, "max_workers"),
        ("resources.cpus_per_worker", r.cpus_per_worker, limits.max_cpus_per_worker, "max_cpus_per_worker"),
        ("resources.gpus_per_worker", r.gpus_per_worker, limits.max_gpus_per_worker, "max_gpus_per_worker"),
    ]
    if spec.data.is_synthetic:
        images = spec.data.synthetic.num_train + spec.data.synthetic.num_val
        bounds.append(
            ("data.synthetic.num_train", images, limits.max_synthetic_images, "max_synthetic_images")
        )
    for field, value, most, name in bounds:
        if value > most:
            what = f"num_train + num_val = {value} images" if name == "max_synthetic_images" else f"{value:g}"
            raise ValueError(f"{field}: {what} is over this service's limit of {most:g} (limits.{name})")
    if r.workers * r.gpus_per_worker > limits.max_gpus_per_job:
        raise ValueError(
            f"resources.gpus_per_worker: {r.workers} worker(s) x {r.gpus_per_worker:g} GPUs is over this "
            f"service's limit of {limits.max_gpus_per_job:g} GPUs per job (limits.max_gpus_per_job)"
        )


def check_local_capacity(spec: JobSpec, cpus: int, gpus: int = 0) -> None:
    """The embedded head is one fixed machine: a job must fit its CPUs and GPUs."""
    r = spec.resources
    if r.workers * r.cpus_per_worker > cpus:
        raise ValueError(
            f"resources.cpus_per_worker: {r.workers} worker(s) x {r.cpus_per_worker:g} CPUs is more than "
            f"the {cpus} CPUs of this service's local Ray; ask for at most {cpus / r.workers:g} per worker"
        )
    if r.workers * r.gpus_per_worker > gpus:
        have = f"the {gpus} GPUs of" if gpus else "no GPU on"
        raise ValueError(
            f"resources.gpus_per_worker: {r.workers} worker(s) x {r.gpus_per_worker:g} GPUs is more than "
            f"{have} this service's local Ray"
            + (f"; ask for at most {gpus / r.workers:g} per worker" if gpus else ": train on CPUs (0)")
        )


def _refuse_memory(estimate: MemoryEstimate, budget: str) -> None:
    largest = estimate.largest()
    raise ValueError(
        f"{largest.fields[0]}: the job needs about {_gib(estimate.per_worker)} of memory per worker "
        f"({estimate.describe()}): {budget}; lower {', '.join(largest.fields)}"
    )


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB"


# --- what the embedded head's machine has ----------------------------------------------------------


def detected_gpus(dev: Path = Path("/dev")) -> int:
    """The GPUs a Ray head started here would offer: Ray counts NVIDIA devices with NVML, which sees
    the /dev/nvidia<N> device files, and at most as many as CUDA_VISIBLE_DEVICES lists when it is set
    (empty, or NoDevFiles: none)."""
    try:
        found = sum(1 for p in dev.iterdir() if re.fullmatch(r"nvidia\d+", p.name))
    except OSError:
        found = 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return found
    if visible.strip() in ("", "NoDevFiles"):
        return 0
    return min(found, len(visible.split(",")))


def machine_memory() -> int:
    """This machine's memory in bytes, or its cgroup's limit when that is lower (a container)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def driver_env(settings: ServiceSettings) -> dict[str, str]:
    """What a job's driver must be given for the limits it enforces itself (trainer.train.ray_run)."""
    return {RESOURCE_WAIT_ENV: repr(float(settings.limits.resource_wait_s))}
