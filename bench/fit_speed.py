"""How fast, and how well, are anchors fitted without training? Fits 5 and 9 anchors at a 416 px input
to every VOC07 box (train + val + test, 30,638 boxes, from ../shared/data/voc) with YOLOv2's IoU
k-means (median centroids, the default, and mean centroids, YOLOv2's), with the paper's log-space
warm-up followed by the IoU phase (`learned`, default settings), and with YOLOv5's autoanchor
re-implemented (trainer.fit.autoanchor), in this process. Then the same fits on coco128's 929 train
boxes (../shared/data/coco128), as a check on a second dataset. Metrics are on all boxes.

Timing: one warm-up call of each method first (not counted), then RUNS calls of each (AUTO_RUNS of
autoanchor, which takes seconds), alternating so all see the same machine load; the median is
reported. Only `fit_anchors` is timed (boxes are already in memory), in a process on one torch
thread as `anchor-opt fit` runs it, autoanchor included. speedup = autoanchor_s / learned_s.

`--sweep` also prints the grids the learned defaults were chosen from: mean best IoU of the log-space
objective for each init, soft-assignment distance, temperature and soft-phase length, and of the IoU
phase for its step size and patience (takes a few minutes). `--seeds N` fits autoanchor with seeds
0..N-1 to show its seed-to-seed spread.

Final line: fit_speed: kmeans_s=.. learned_s=.. kmeans_iou=.. learned_iou=.. kmeans_bpr=.. learned_bpr=..
kmeans_mean_iou=.. kmeans9_iou=.. learned9_iou=.. learned9_s=.. autoanchor_iou=.. autoanchor_bpr=..
autoanchor_s=.. autoanchor9_iou=.. autoanchor9_bpr=.. speedup=.. learned9_bpr=.. autoanchor9_s=.. speedup9=..
(one line; kmeans is median k-means, speedup autoanchor's seconds over learned's)
(targets: k-means and learned each under 1 s; learned mean IoU above k-means' and autoanchor's at 5
and 9 anchors with BPR at least autoanchor's; speedup >= 20)
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
from trainer.fit.refine import refine_iou  # noqa: E402
from trainer.fit.shapes import Shapes  # noqa: E402
from trainer.fit.solver import fit_anchors  # noqa: E402
from trainer.model.anchors import anchor_fit  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
VOC = SHARED / "voc"
COCO128 = SHARED / "coco128" / "annotations" / "instances_train2017_first128.json"
SPLITS = ("train", "val", "test")
NUM, NUM9, SIZE, RUNS, AUTO_RUNS = 5, 9, 416, 5, 3
METHODS = {  # name: (method, settings)
    "kmeans": ("kmeans", {}),
    "kmeans_mean": ("kmeans", {"centroid": "mean"}),
    "learned": ("learned", {}),
    "log_space": ("learned", {"refine_steps": 0}),
    "autoanchor": ("autoanchor", {}),
}


def voc07_boxes(size: int = SIZE) -> torch.Tensor:
    """[N, 2] (w, h) of every VOC07 box, pixels at the letterboxed `size` input, via the COCO reader."""
    sets = [open_dataset(VOC / f"pascal_{s}2007.json", "coco", check_images=False) for s in SPLITS]
    return torch.from_numpy(concat_sets(sets).boxes_wh(size))


def fit(name: str, boxes: torch.Tensor, num: int, **extra):
    method, settings = METHODS[name]
    return fit_anchors(boxes, num, method, **settings, **extra)


def timed(boxes: torch.Tensor, num: int, names: tuple[str, ...]) -> dict[str, list[float]]:
    """Seconds of each fit: a warm-up each, then rounds alternating the order; autoanchor AUTO_RUNS times."""
    times: dict[str, list[float]] = {n: [] for n in names}
    for name in names:  # warm-up, not counted
        fit(name, boxes, num)
    for i in range(RUNS):
        for name in names if i % 2 == 0 else tuple(reversed(names)):
            if name == "autoanchor" and i >= AUTO_RUNS:
                continue
            start = time.perf_counter()
            fit(name, boxes, num)
            times[name].append(time.perf_counter() - start)
    return times


def scores(boxes: torch.Tensor, num: int, times: dict | None = None) -> dict[str, dict]:
    """Each method's metrics on all boxes (and its median seconds), printed a line each."""
    out = {}
    for name in METHODS:
        result = fit(name, boxes, num)
        out[name] = anchor_fit(result.anchors, boxes)
        pairs = ", ".join(f"{w:.1f}x{h:.1f}" for w, h in result.anchors.tolist())
        run = ""
        if times and name in times:
            out[name]["seconds"] = statistics.median(times[name])
            run = " runs " + " ".join(f"{t:.3f}" for t in times[name]) + " s"
        m = out[name]
        print(
            f"  {num} {name:11s} IoU {m['mean_best_iou']:.4f} BPR {m['bpr']:.4f} "
            f"apt {m['anchors_per_target']:.2f}{run} [{result.objective}]: {pairs}"
        )
    return out


def sweep(boxes: torch.Tensor) -> None:
    print("\nmean best IoU of the log-space objective by init, dist, T and soft steps (5 anchors, 416 px):")
    for init in ("uniform", "kmeans", "identical"):
        for dist in ("iou", "log_l2"):
            cells = []
            for temperature in (0.05, 0.1, 0.2, 0.5):
                for soft in (0, 10, 30, 100):
                    settings = {"init": init, "dist": dist, "temperature": temperature, "soft_steps": soft}
                    result = fit_anchors(boxes, NUM, refine_steps=0, **settings)
                    iou = anchor_fit(result.anchors, boxes)["mean_best_iou"]
                    cells.append(f"T={temperature:<4} soft={soft:<3} {iou:.4f}")
            print(f"  {init:9s} {dist:6s}  " + " | ".join(cells))
    print("\nthe IoU phase from the warm-up by step size and patience (mean best IoU, BPR, steps):")
    for num in (NUM, NUM9):
        warm_up = fit_anchors(boxes, num, max_hard_steps=0, refine_steps=0).anchors
        shapes = Shapes.of(boxes, torch.float32)
        cells = []
        for lr, patience in ((0.02, 20), (0.05, 10), (0.05, 20), (0.1, 10)):
            r = refine_iou(shapes, warm_up.double(), 1000, lr, patience=patience)
            m = anchor_fit(r.anchors, boxes)
            cells.append(f"lr={lr} patience={patience} {m['mean_best_iou']:.4f} {m['bpr']:.4f} {r.steps}")
        print(f"  {num} anchors  " + " | ".join(cells))


def autoanchor_seeds(boxes: torch.Tensor, seeds: int) -> None:
    for num in (NUM, NUM9):
        cells = []
        for seed in range(seeds):
            m = anchor_fit(fit_anchors(boxes, num, "autoanchor", seed=seed).anchors, boxes)
            cells.append(f"seed {seed} {m['mean_best_iou']:.4f} {m['bpr']:.4f}")
        print(f"  autoanchor {num} anchors: " + " | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true", help="also print the settings grids")
    parser.add_argument("--seeds", type=int, default=0, help="also fit autoanchor with seeds 0..N-1")
    args = parser.parse_args()
    # As `anchor-opt fit` does (trainer.fit.dataset): with the process on 2 threads, each fit's
    # switch to one (trainer.torch_threads.one_thread) and back left the learned fit 2-3x slower on
    # this 2-core machine.
    torch.set_num_threads(1)

    boxes = voc07_boxes()
    print(f"VOC07 train+val+test: {len(boxes)} boxes at {SIZE} px, torch {torch.__version__}")
    names = ("kmeans", "learned", "autoanchor")
    s5 = scores(boxes, NUM, timed(boxes, NUM, names))
    s9 = scores(boxes, NUM9, timed(boxes, NUM9, names))
    if COCO128.exists():
        coco = torch.from_numpy(open_dataset(COCO128, "coco", check_images=False).boxes_wh(SIZE))
        print(f"coco128 train: {len(coco)} boxes at {SIZE} px")
        for num in (NUM, NUM9):
            scores(coco, num)
    if args.seeds:
        autoanchor_seeds(boxes, args.seeds)
    if args.sweep:
        sweep(boxes)
    k, lr, km, a = s5["kmeans"], s5["learned"], s5["kmeans_mean"], s5["autoanchor"]
    print(
        f"fit_speed: kmeans_s={k['seconds']:.3f} learned_s={lr['seconds']:.3f} "
        f"kmeans_iou={k['mean_best_iou']:.4f} learned_iou={lr['mean_best_iou']:.4f} "
        f"kmeans_bpr={k['bpr']:.4f} learned_bpr={lr['bpr']:.4f} kmeans_mean_iou={km['mean_best_iou']:.4f} "
        f"kmeans9_iou={s9['kmeans']['mean_best_iou']:.4f} learned9_iou={s9['learned']['mean_best_iou']:.4f} "
        f"learned9_s={s9['learned']['seconds']:.3f} autoanchor_iou={a['mean_best_iou']:.4f} "
        f"autoanchor_bpr={a['bpr']:.4f} autoanchor_s={a['seconds']:.3f} "
        f"autoanchor9_iou={s9['autoanchor']['mean_best_iou']:.4f} "
        f"autoanchor9_bpr={s9['autoanchor']['bpr']:.4f} "
        f"speedup={a['seconds'] / lr['seconds']:.1f} learned9_bpr={s9['learned']['bpr']:.4f} "
        f"autoanchor9_s={s9['autoanchor']['seconds']:.3f} "
        f"speedup9={s9['autoanchor']['seconds'] / s9['learned']['seconds']:.1f}"
    )


if __name__ == "__main__":
    main()
