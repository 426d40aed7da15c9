"""Running small tensor work on one torch thread."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """Runs torch on one intra-op thread, then restores the previous count.

    For many small ops on [A, N] tensors (anchor fits: A ~ 5-9 anchors, N boxes), threads barely
    help, and when other processes keep the cores busy, torch's spinning worker threads make every
    op wait: on the 2-core machine with a training run beside it, VOC07's learned fit took 7.4 s on
    2 threads and 0.32 s on one, the AnchorGenerator fit 12.6 s and 0.27 s. The switch itself
    costs: called from a process on 2 threads, the default learned fit on VOC07 took 0.15 s, from
    one on 1 thread (as `anchor-opt fit` sets it) 0.06 s.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
