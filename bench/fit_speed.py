"""How fast, and how well, are anchors fitted without training? Fits 5 anchors at a 416 px input to
every VOC07 box (train + val + test, 30,638 boxes, from ../shared/data/voc) with YOLOv2's IoU k-means
and with the paper's log-space objective (`learned`, default settings), in this process.

Timing: one warm-up call of each method first (not counted), then RUNS calls of each, alternating
so both see the same machine load; the median is reported. Only `fit_anchors` is timed (boxes are
already in memory). `fit_anchors` runs torch on one thread (see trainer.fit.solver._one_thread).

`--sweep` also prints the grid the learned defaults were chosen from: mean best IoU for each init,
soft-assignment distance, temperature and soft-phase length (takes a minute or two).

Final line: fit_speed: kmeans_s=.. learned_s=.. kmeans_iou=.. learned_iou=.. kmeans_bpr=.. learned_bpr=..
(targets: each under 1 s; learned mean IoU >= k-means')
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1])
)  # run as `python bench/fit_speed.py` from a checkout

import torch  # noqa: E402

from trainer.data.records import concat_sets  # noqa: E402
from trainer.data.sources import open_dataset  # noqa: E402
from trainer.fit.solver import fit_anchors  # noqa: E402
from trainer.model.anchors import anchor_fit  # noqa: E402

VOC = Path(__file__).resolve().parents[2] / "shared" / "data" / "voc"
SPLITS = ("train", "val", "test")
NUM, SIZE, RUNS = 5, 416, 5


def voc07_boxes(size: int = SIZE) -> torch.Tensor:
    """[N, 2] (w, h) of every VOC07 box, pixels at the letterboxed `size` input, via the COCO reader."""
    sets = [open_dataset(VOC / f"pascal_{s}2007.json", "coco", check_images=False) for s in SPLITS]
    return torch.from_numpy(concat_sets(sets).boxes_wh(size))


def timed(boxes: torch.Tensor) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"kmeans": [], "learned": []}
    for method in times:  # warm-up, not counted
        fit_anchors(boxes, NUM, method)
    for i in range(RUNS):
        for method in ("kmeans", "learned") if i % 2 == 0 else ("learned", "kmeans"):
            start = time.perf_counter()
            fit_anchors(boxes, NUM, method)
            times[method].append(time.perf_counter() - start)
    return times


def sweep(boxes: torch.Tensor) -> None:
    print("\nmean best IoU of learned by init, soft-assignment dist, T and soft steps (5 anchors, 416 px):")
    for init in ("uniform", "kmeans", "identical"):
        for dist in ("iou", "log_l2"):
            cells = []
            for temperature in (0.05, 0.1, 0.2, 0.5):
                for soft in (0, 10, 30, 100):
                    fit = fit_anchors(
                        boxes, NUM, init=init, dist=dist, temperature=temperature, soft_steps=soft
                    )
                    iou = anchor_fit(fit.anchors, boxes)["mean_best_iou"]
                    cells.append(f"T={temperature:<4} soft={soft:<3} {iou:.4f}")
            print(f"  {init:9s} {dist:6s}  " + " | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true", help="also print the settings grid")
    args = parser.parse_args()

    boxes = voc07_boxes()
    print(f"VOC07 train+val+test: {len(boxes)} boxes at {SIZE} px, {NUM} anchors, torch {torch.__version__}")
    times = timed(boxes)
    score = {}
    for method in ("kmeans", "learned"):
        fit = fit_anchors(boxes, NUM, method)
        score[method] = anchor_fit(fit.anchors, boxes)
        pairs = ", ".join(f"{w:.1f}x{h:.1f}" for w, h in fit.anchors.tolist())
        runs = " ".join(f"{t:.3f}" for t in times[method])
        steps = f", {fit.steps} steps ({fit.soft_steps} soft + {fit.hard_steps} hard)" if fit.steps else ""
        print(f"{method:8s} runs {runs} s{steps}: {pairs}")
    if args.sweep:
        sweep(boxes)
    k, lr = score["kmeans"], score["learned"]
    print(
        f"fit_speed: kmeans_s={statistics.median(times['kmeans']):.3f} "
        f"learned_s={statistics.median(times['learned']):.3f} "
        f"kmeans_iou={k['mean_best_iou']:.4f} learned_iou={lr['mean_best_iou']:.4f} "
        f"kmeans_bpr={k['bpr']:.4f} learned_bpr={lr['bpr']:.4f}"
    )


if __name__ == "__main__":
    main()
