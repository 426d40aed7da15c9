"""Proof on real photos: learned anchors against frozen ones on BCCD (blood-cell smears, 3 classes).

Trains on BCCD train (205 images), evaluates on BCCD val (87); test stays unused. No pretrained
weights: the tiny backbone from random init, with the recipe of configs/bccd.yaml. Four variants,
each over several seeds (the network init, data order and augmentation change with the seed):

    kmeans_frozen      YOLOv2's baseline: IoU k-means anchors, frozen, no warm-up tricks
    kmeans_opt         k-means init, anchors learned with all three tricks
    identical_frozen   all anchors one shape (the boxes' mean), frozen, no tricks
    identical_opt      the same identical init, learned with all three tricks

Runs go `--jobs` at a time, one torch thread each (on 2 cores, two one-thread runs train faster
together than one two-thread run). Prints each run as it ends, then mean +- sd per variant, then
one line with AP50 means over the seeds, the largest sd of any variant's AP50, and kmeans_opt's AP:

real_data: kmeans_frozen=AP50 kmeans_opt=AP50 identical_frozen=AP50 identical_opt=AP50 sd=MAX_SD \
    ap_kmeans_opt=AP   (one line)

Usage: python bench/real_data.py [--seeds 3] [--jobs 2] [--config configs/bccd.yaml] [--set K=V ...]
(about an hour on 2 cores; skips with a message when ../shared/data/bccd is absent).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from harness import NO_TRICKS, mean_sd

ROOT = Path(__file__).resolve().parents[1]
BCCD = ROOT.parent / "shared" / "data" / "bccd"
VARIANTS = {
    "kmeans_frozen": ["anchors.init=kmeans", "anchors.learn=false", *NO_TRICKS],
    "kmeans_opt": ["anchors.init=kmeans", "anchors.learn=true"],
    "identical_frozen": ["anchors.init=identical", "anchors.learn=false", *NO_TRICKS],
    "identical_opt": ["anchors.init=identical", "anchors.learn=true"],
}


def run(config: str, overrides: list[str]) -> dict:
    """One training run to the end in this (pool) process, with one torch thread."""
    import torch

    torch.set_num_threads(1)
    from harness import train_to_end

    from trainer.config_files import load_config

    cfg = load_config(config, overrides)
    _, card = train_to_end(cfg)
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--config", default=str(ROOT / "configs" / "bccd.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    args = parser.parse_args()
    if not BCCD.is_dir():
        sys.exit(f"real_data: skipped: {BCCD} is absent (the BCCD photos live in ../shared/data)")
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    base = [f"data.source={BCCD}", "data.train_split=train", "data.val_split=val", *args.set]
    jobs = {}
    started = time.perf_counter()
    cards: dict[str, list[dict]] = {name: [] for name in names}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for seed in range(args.seeds):
            for name in names:
                overrides = [*base, *VARIANTS[name], f"seed={seed}", f"anchors.seed={seed}"]
                jobs[pool.submit(run, args.config, overrides)] = (name, seed)
        for done, future in enumerate(as_completed(jobs), 1):
            name, seed = jobs[future]
            card = future.result()
            cards[name].append(card)
            elapsed = time.perf_counter() - started
            scores = f"AP50 {card['ap50']:.3f}  AP {card['ap']:.3f}  train {card['seconds'] / 60:.1f} min"
            where = f"[{done}/{len(jobs)} {elapsed / 60:5.1f} min]"
            anchors = json.dumps(card["anchors"])
            print(f"{where} {name:16s} seed {seed}  {scores}  anchors {anchors}", flush=True)
    means, sds, ap = {}, [], {}
    for name in names:
        m, sd = mean_sd([c["ap50"] for c in cards[name]])
        a, a_sd = mean_sd([c["ap"] for c in cards[name]])
        means[name], ap[name] = m, a
        sds.append(sd)
        print(f"{name:16s} AP50 {m:.3f} +- {sd:.3f}   AP {a:.3f} +- {a_sd:.3f}")
    print(f"total {(time.perf_counter() - started) / 60:.1f} min")
    line = " ".join(f"{name}={means[name]:.3f}" for name in names)
    ap_opt = f" ap_kmeans_opt={ap['kmeans_opt']:.3f}" if "kmeans_opt" in ap else ""
    print(f"real_data: {line} sd={max(sds):.3f}{ap_opt}")


if __name__ == "__main__":
    main()
