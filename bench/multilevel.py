"""Three levels against one: do learned anchors recover true shapes spanning 8-200 px?

The synthetic set's objects come from nine known shapes from 8x9 to 200x130 px on a 256 px input
(DEFAULT below). Each variant trains the tiny model from an identical init (every anchor the boxes'
geometric mean) with all three tricks, the same schedule and seed:

    levels3        model.levels [8, 16, 32], 3 anchors a level, anchors.level_order area (the default)
    levels3_fixed  the same with anchors.level_order none (the measurement that chose the default)
    levels1        one level (stride 16) with all 9 anchors

E = mean absolute log error of the 9 learned anchors against the 9 true shapes under the best
one-to-one matching (trainer.model.anchors.matched_log_error); AP50 on the validation images.
Target: levels3_err <= 0.05, and one level clearly worse. Measured (docs/levels.md): not met from
the identical init; from `--set anchors.init=uniform` or `kmeans` three levels reach 0.047-0.049.

Final line: multilevel: levels3_err=.. levels1_err=.. levels3_ap50=.. levels1_ap50=.. (and the
fixed-order variant's figures after them)
Usage: python bench/multilevel.py [--epochs N] [--seed S] [--only VARIANT...] [--set KEY=VALUE]
"""

import argparse

from harness import train_to_end

from trainer.config_files import load_config

SHAPES = [(8, 9), (12, 22), (22, 12), (30, 30), (36, 72), (72, 40), (80, 80), (110, 190), (200, 130)]
COMMON = [
    "model.image_size=256",
    "data.synthetic.num_train=1000",
    "data.synthetic.num_val=200",
    "data.synthetic.max_objects=4",
    "data.synthetic.shapes=[" + ", ".join(f"{{w: {w}, h: {h}}}" for w, h in SHAPES) + "]",
    "anchors.init=identical",
    "optim.batch_size=16",
]
VARIANTS = {
    "levels3": ["model.levels=[8, 16, 32]", "anchors.num=3"],
    "levels3_fixed": ["model.levels=[8, 16, 32]", "anchors.num=3", "anchors.level_order=none"],
    "levels1": ["anchors.num=9"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), help="run only these variants")
    parser.add_argument("--set", action="append", default=[], help="another setting for every variant")
    args = parser.parse_args()
    cards = {}
    for name, overrides in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        cfg = load_config(
            None, [*COMMON, *overrides, f"optim.epochs={args.epochs}", f"seed={args.seed}", *args.set]
        )
        _, card = train_to_end(cfg)
        cards[name] = card
        print(
            f"{name:14s} E={card['error']:.3f}  AP50={card['ap50']:.3f}  {card['seconds']:.0f}s", flush=True
        )
        print(f"{'':14s} learned {card['anchors']}", flush=True)
    parts = [f"{k}_err={c['error']:.3f}" for k, c in cards.items()] + [
        f"{k}_ap50={c['ap50']:.3f}" for k, c in cards.items()
    ]
    order = ["levels3_err", "levels1_err", "levels3_ap50", "levels1_ap50"]
    parts.sort(key=lambda p: order.index(p.split("=")[0]) if p.split("=")[0] in order else len(order))
    print("multilevel: " + " ".join(parts))


if __name__ == "__main__":
    main()
