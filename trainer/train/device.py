"""Which device a run in one process trains on, whether it autocasts, and how its batches get there.

`resolve_device(cfg.device)` turns the config's `device` (auto, cpu, cuda, cuda:N) into a
torch.device, or a ValueError naming `device` when that device is not here, before a run writes
anything. Ray Train workers do not use it: each trains on the device Ray gives it
(trainer.train.ray_run). Both decide autocast by the same rule, `uses_amp`: bf16 on CUDA; CPU
runs stay in fp32, as they always have.

`to_device` is the one-process counterpart of Ray's `prepare_data_loader`: each batch copied with
`non_blocking=True`, from pinned host memory on CUDA, so the host queues the step's kernels
without waiting for the copy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader

_NAME = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")


def resolve_device(name: str) -> torch.device:
    """`auto`: cuda:0 when CUDA is available, else the CPU; `cuda` is cuda:0. ValueError naming
    `device` for a name that is none of auto, cpu, cuda, cuda:N, or a CUDA device that is not here."""
    if not _NAME.match(name):
        raise ValueError(f"device={name!r}: expected auto, cpu, cuda or cuda:N")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ValueError(
            f"device={name}: CUDA is not available here (torch {torch.__version__}, {built}); "
            "use device=cpu or device=auto"
        )
    index = int(name.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ValueError(
            f"device={name}: this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1}); "
            "CUDA_VISIBLE_DEVICES decides which and how many"
        )
    return torch.device("cuda", index)


def uses_amp(device: torch.device) -> bool:
    """Whether training on `device` runs its forward pass under bf16 autocast: on CUDA only."""
    return device.type == "cuda"


def to_device(loader: Iterable, device: torch.device) -> Iterator:
    """The loader's batches (tuples of tensors) on `device`: copied with non_blocking=True, from
    pinned memory on CUDA (a DataLoader is switched to pinning its batches itself, in its pin
    thread when it has workers)."""
    if device.type == "cuda" and isinstance(loader, DataLoader):
        loader.pin_memory = True  # allowed after construction; read when iteration starts
    for batch in loader:
        yield tuple(t.to(device, non_blocking=True) for t in batch)
