"""The paper's Table 6 ablation, on the synthetic set: what each training technique adds.

    baseline           k-means anchors, frozen (YOLOv2)
    opt                + anchors learned
    opt_soft           + soft-assignment warm-up
    opt_soft_clust     + online clustering warm-up
    opt_all            + batch norm without shift on dw, dh
    identical_frozen   all anchors identical, frozen
    identical_opt_all  all anchors identical, learned with all three techniques

Each for several seeds (data, init and order all change with the seed), with the demo schedule.
Prints each run, then mean +- sd per variant, then the summary line of mean AP50 over seeds:
ablation: baseline=.. opt=.. opt_soft=.. opt_soft_clust=.. opt_all=.. identical_frozen=.. identical_opt_all=..
Usage: python bench/ablation.py [--seeds N]   (default 3; about a minute per run on 2 cores)
"""

import argparse

from harness import config, mean_sd, train_to_end

OFF = {"soft": "tricks.soft_assign.enabled=false", "clust": "tricks.clustering.enabled=false",
       "bn": "tricks.bn_no_shift=false"}  # fmt: skip
VARIANTS = {
    "baseline": ["anchors.init=kmeans", "anchors.learn=false", *OFF.values()],
    "opt": ["anchors.init=kmeans", *OFF.values()],
    "opt_soft": ["anchors.init=kmeans", OFF["clust"], OFF["bn"]],
    "opt_soft_clust": ["anchors.init=kmeans", OFF["bn"]],
    "opt_all": ["anchors.init=kmeans"],
    "identical_frozen": ["anchors.init=identical", "anchors.learn=false", *OFF.values()],
    "identical_opt_all": ["anchors.init=identical"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    seeds = range(parser.parse_args().seeds)
    cards: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for seed in seeds:
        for name, overrides in VARIANTS.items():
            _, card = train_to_end(config(f"seed={seed}", *overrides))
            cards[name].append(card)
            print(f"seed {seed} {name:18s} AP50={card['ap50']:.4f} AP={card['ap']:.4f} E={card['error']:.3f} "
                  f"{card['seconds']:.0f}s", flush=True)  # fmt: skip
    print()
    for name, runs in cards.items():
        ap50, ap50_sd = mean_sd([c["ap50"] for c in runs])
        ap, ap_sd = mean_sd([c["ap"] for c in runs])
        err, _ = mean_sd([c["error"] for c in runs])
        print(f"{name:18s} AP50 {ap50:.4f} +- {ap50_sd:.4f}   AP {ap:.4f} +- {ap_sd:.4f}   E {err:.3f}")
    means = {name: mean_sd([c["ap50"] for c in runs])[0] for name, runs in cards.items()}
    print("ablation: " + " ".join(f"{k}={v:.4f}" for k, v in means.items()))


if __name__ == "__main__":
    main()
