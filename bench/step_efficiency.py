"""How much of a training step is the network itself? Times, on the same in-memory batch, the full
training step (forward, assignment, loss, backward, gradient clipping, optimizer and scheduler
step) against the bare model's forward and backward (a sum of the outputs as the "loss", no
optimizer), alternating which goes first in each pair so both see the same machine load.

    ratio = step throughput / bare forward+backward throughput = median over pairs of bare / step

Assignment, loss and the optimizer must not dominate: target ratio >= 0.85. Measured steady state
(after the warm-up: hard assignment) and, as a detail, during the warm-up tricks.

Final line: step_efficiency: ratio=R
"""

import statistics
import time

import torch
from harness import config, on, prepare, sync

from trainer.train.batches import epoch_batches
from trainer.train.step import train_step

PAIRS = 100
WARM = 10


def bare_forward_backward(model, images: torch.Tensor, amp: bool = False) -> None:
    model.zero_grad(set_to_none=True)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):  # as the step's forward
        pred, log_anchors = model(images.float() / 255)
    (pred.float().sum() + log_anchors.float().sum()).backward()


def measure(cfg, device: torch.device | None = None) -> tuple[float, float, float]:
    """(median step s, median bare s, median per-pair bare/step) on one fixed batch, on `device`
    (default the CPU; on a GPU both in bf16 autocast, each timed up to the end of its GPU work)."""
    state, data = prepare(cfg, device)
    images, targets = on(device, *next(iter(epoch_batches(state, data))))
    state.model.train()
    for _ in range(WARM):
        train_step(state, images, targets)
        bare_forward_backward(state.model, images, state.amp)
    sync(device)
    steps, bares = [], []
    for i in range(PAIRS):
        for which in ("step", "bare") if i % 2 == 0 else ("bare", "step"):
            start = time.perf_counter()
            if which == "step":
                train_step(state, images, targets)
            else:
                bare_forward_backward(state.model, images, state.amp)
            sync(device)
            (steps if which == "step" else bares).append(time.perf_counter() - start)
    ratios = [b / s for s, b in zip(steps, bares, strict=True)]
    return statistics.median(steps), statistics.median(bares), statistics.median(ratios)


def main() -> None:
    long = ["optim.epochs=100"]
    w_step, w_bare, w_ratio = measure(config(*long, "tricks.warmup_steps=100000"))
    print(f"during warm-up: step {w_step * 1e3:.1f} ms, bare {w_bare * 1e3:.1f} ms, ratio {w_ratio:.3f}")
    step, bare, ratio = measure(config(*long, "tricks.warmup_steps=0"))
    print(f"steady state: step {step * 1e3:.1f} ms, bare forward+backward {bare * 1e3:.1f} ms (batch 32)")
    print(f"step_efficiency: ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
