"""Do learned anchors help on real photos? The small model on coco128, side by side in one run.

Trains the tiny CPU model on coco128's 128 train2017 images (YOLO layout in ../shared/data) at a
small input for a fixed budget, twice from the same seed and data order:

    baseline   YOLOv2 as usual: k-means anchors, frozen, no warm-up tricks
    opt        the paper: the same k-means anchors learned, with all three tricks

and evaluates both on coco128's 128 val2017 images (COCO AP in original image coordinates).
80 classes from 128 images is far too little data for a good detector: read the two numbers
against each other, not against COCO leaderboards. Final line:

    coco128: baseline_ap50=.. opt_ap50=.. baseline_ap=.. opt_ap=..

`--epochs` and `--image-size` change the budget (defaults keep both runs within ~10 min on 2 cores).
"""

from __future__ import annotations

import argparse
import time

from harness import NO_TRICKS, train_to_end

from trainer.config_files import load_config

COCO128 = "../shared/data/coco128"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=COCO128, help="the coco128 folder (YOLO layout)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=192)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    steps_per_epoch = 128 // 16
    common = [
        f"seed={args.seed}",
        f"data.source={args.data}",
        "data.format=yolo",
        "data.train_split=train",
        "data.val_split=val",
        "data.cache_images=true",
        f"model.image_size={args.image_size}",
        "optim.batch_size=16",
        f"optim.epochs={args.epochs}",
        "optim.lr_warmup_steps=40",
        # Warm-up tricks over the first third of the run (the demo's 300 of 620 steps, scaled).
        f"tricks.warmup_steps={args.epochs * steps_per_epoch // 3}",
        "eval.conf_threshold=0.001",
    ]
    variants = {
        "baseline": [*common, "anchors.init=kmeans", "anchors.learn=false", *NO_TRICKS],
        "opt": [*common, "anchors.init=kmeans", "anchors.learn=true"],
    }
    scores = {}
    for name, overrides in variants.items():
        cfg = load_config(None, overrides)
        started = time.perf_counter()
        state, card = train_to_end(cfg)
        scores[name] = card
        print(
            f"{name:9s} AP50 {card['ap50']:.4f}  AP {card['ap']:.4f}  {state.step} steps in "
            f"{time.perf_counter() - started:.0f} s  anchors {card['anchors']}",
            flush=True,
        )
    b, o = scores["baseline"], scores["opt"]
    print(f"coco128: baseline_ap50={b['ap50']:.4f} opt_ap50={o['ap50']:.4f} "
          f"baseline_ap={b['ap']:.4f} opt_ap={o['ap']:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
