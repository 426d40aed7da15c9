"""What does learning the anchors cost per training step? Times steps of the same model, data and
batch with learned and with frozen anchors, alternating (which one goes first flips every pair) so
both see the same machine load, and reports the ratio of the medians. Steps are timed after the
warm-up (hard assignment, no clustering term): the steady-state cost. The paper reports 1.016 for
Faster R-CNN. The warm-up tricks' own cost is measured the same way and printed as a detail.

Final line: anchor_overhead: ratio=R   (target R <= 1.02)
"""

import statistics
import time

from harness import config, on, prepare, sync

from trainer.train.batches import epoch_batches
from trainer.train.step import train_step

PAIRS = 150
WARM = 10


def batches(state, data):
    while True:
        yield from epoch_batches(state, data)


def timed_ratio(cfg_a, cfg_b, device=None) -> tuple[float, float, float]:
    """(median step time of a, of b, median of the per-pair ratios a/b), on `device` (default the
    CPU; on a GPU in bf16 autocast, each step timed up to the end of its GPU work)."""
    (sa, data), (sb, _) = prepare(cfg_a, device), prepare(cfg_b, device)
    ia, ib = batches(sa, data), batches(sb, data)
    for _ in range(WARM):
        train_step(sa, *on(device, *next(ia)))
        train_step(sb, *on(device, *next(ib)))
    sync(device)
    ta, tb = [], []
    for i in range(PAIRS):
        order = [(sa, ia, ta), (sb, ib, tb)] if i % 2 == 0 else [(sb, ib, tb), (sa, ia, ta)]
        for state, it, times in order:
            images, targets = on(device, *next(it))
            start = time.perf_counter()
            train_step(state, images, targets)
            sync(device)
            times.append(time.perf_counter() - start)
    ratios = [a / b for a, b in zip(ta, tb, strict=True)]
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)


def main() -> None:
    main_phase = ["tricks.warmup_steps=0", "optim.epochs=100"]
    learned, frozen, ratio = timed_ratio(config(*main_phase), config(*main_phase, "anchors.learn=false"))
    print(f"steady state: learned {learned * 1e3:.1f} ms/step, frozen {frozen * 1e3:.1f} ms/step (batch 32)")
    warm = ["tricks.warmup_steps=100000", "optim.epochs=100"]
    w_learned, _, w_ratio = timed_ratio(config(*warm), config(*main_phase, "anchors.learn=false"))
    print(
        f"during warm-up (soft assignment + clustering): {w_learned * 1e3:.1f} ms/step, ratio {w_ratio:.3f}"
    )
    print(f"anchor_overhead: ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
