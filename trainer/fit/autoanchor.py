"""A baseline: YOLOv5's autoanchor, re-implemented from its documented algorithm (no code copied).

YOLOv5 (ultralytics, AGPL) checks and re-fits a model's anchors before training. Its documented
algorithm, on box shapes (w, h) in pixels at the input size:

1. keep the boxes with either side at least 2 px;
2. k-means on the whitened shapes: divide w and h by their standard deviations, Euclidean k-means
   (scipy.cluster.vq.kmeans, 30 restarts, the best distortion kept), multiply back;
3. a genetic search of 1000 generations: each multiplies every anchor coordinate, with probability
   0.9, by 1 + sigma * u * n (sigma 0.1, u ~ U(0, 1) once per generation, n ~ N(0, 1) per
   coordinate), clipped to [0.3, 3.0], with the anchors kept at least 2 px; the mutant replaces the
   anchors when its fitness is higher;
4. fitness: with r = box / anchor and x = min over w, h of min(r, 1/r) (1 is a perfect match),
   best_x = max over anchors of x, fitness = mean over boxes of best_x * (best_x > 1 / thr), thr 4.

Here it is seeded (numpy's default_rng for the search, scipy's k-means given the same seed), so the
same boxes always give the same anchors, and it runs wherever `fit_anchors` runs it: on one thread.
The fitness is computed as YOLOv5 computes it, from an [N, A, 2] tensor of ratios each generation;
those 1000 evaluations are most of its time (bench/fit_speed.py times it).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from trainer.model.anchors import kmeans_init
from trainer.model.levels import by_area

THRESHOLD = 4.0  # YOLOv5's anchor_t: a box matches an anchor within 4x in w and h
GENERATIONS = 1000
MUTATION_PROB = 0.9
SIGMA = 0.1
KMEANS_RESTARTS = 30  # scipy's `iter`: k-means runs from this many random starts, the best is kept
MIN_ANCHOR_PX = 2.0  # mutated anchors are kept at least this size, as YOLOv5 does


def best_ratio(anchors_wh: Tensor, boxes_wh: Tensor) -> Tensor:
    """[N] for each box: max over anchors of min over w, h of min(r, 1/r), r = box / anchor."""
    r = boxes_wh[:, None, :] / anchors_wh[None, :, :]  # [N, A, 2]
    return torch.minimum(r, 1 / r).amin(-1).amax(-1)


def autoanchor_fitness(anchors_wh, boxes_wh, threshold: float = THRESHOLD) -> float:
    """YOLOv5's anchor fitness: mean over boxes of best_x * (best_x > 1 / threshold)."""
    anchors = torch.as_tensor(anchors_wh, dtype=torch.float32).reshape(-1, 2)
    boxes = torch.as_tensor(boxes_wh, dtype=torch.float32).reshape(-1, 2)
    best = best_ratio(anchors, boxes)
    return float((best * (best > 1 / threshold)).mean())


def whitened_kmeans(boxes: np.ndarray, num: int, seed: int) -> np.ndarray:
    """[num, 2] Euclidean k-means centres of boxes / std, multiplied back (step 2)."""
    scale = boxes.std(0)
    scale[scale <= 0] = 1.0  # one coordinate constant: nothing to whiten
    try:
        from scipy.cluster.vq import kmeans  # what YOLOv5 calls; scipy comes with the train extra
    except ImportError:  # scipy missing: the same algorithm, in numpy
        kmeans = euclidean_kmeans
    centres, _ = kmeans(boxes / scale, num, iter=KMEANS_RESTARTS, seed=seed)
    centres = centres * scale
    if len(centres) < num:  # clusters that end empty are dropped: fill with spread-out boxes
        order = np.argsort(boxes.prod(1), kind="stable")
        picks = order[np.linspace(0, len(order) - 1, num - len(centres)).round().astype(int)]
        centres = np.concatenate([centres, boxes[picks]])
    return centres


def euclidean_kmeans(obs: np.ndarray, k: int, iter: int = 20, seed: int = 0, thresh: float = 1e-5):
    """(centres, distortion) as scipy.cluster.vq.kmeans gives them, for when scipy is missing: Lloyd's
    k-means from `iter` starts of k distinct random observations, until the mean distance to the
    nearest centre changes by less than `thresh`; the lowest distortion wins, empty clusters go."""
    rng = np.random.default_rng(seed)
    best, best_d = None, np.inf
    for _ in range(iter):
        centres = obs[rng.choice(len(obs), k, replace=False)]
        previous = np.inf
        while True:
            dist = np.linalg.norm(obs[:, None, :] - centres[None], axis=-1)
            nearest = dist.argmin(1)
            distortion = float(dist[np.arange(len(obs)), nearest].mean())
            used = np.unique(nearest)
            centres = np.stack([obs[nearest == c].mean(0) for c in used])
            if previous - distortion <= thresh:
                break
            previous = distortion
        if distortion < best_d:
            best, best_d = centres, distortion
    return best, best_d


def autoanchor(
    boxes_wh: Tensor,
    num: int,
    seed: int = 0,
    generations: int = GENERATIONS,
    threshold: float = THRESHOLD,
) -> Tensor:
    """[num, 2] float64 anchors by YOLOv5's autoanchor on boxes [N, 2] px (already filtered), by area.

    With no more distinct shapes than anchors, every distinct shape (as kmeans_init gives them).
    """
    boxes = torch.as_tensor(boxes_wh, dtype=torch.float64).reshape(-1, 2)
    if len(boxes.unique(dim=0)) <= num:
        return kmeans_init(num, boxes).double()
    start = whitened_kmeans(boxes.numpy(), num, seed)
    boxes32 = boxes.float()
    rng = np.random.default_rng(seed)
    anchors = torch.from_numpy(start).float()
    best = autoanchor_fitness(anchors, boxes32, threshold)
    for _ in range(generations):
        factor = np.ones(anchors.shape)
        while (factor == 1).all():  # a generation always tries a change
            mutate = rng.random(anchors.shape) < MUTATION_PROB
            factor = 1 + mutate * rng.random() * rng.standard_normal(anchors.shape) * SIGMA
            factor = factor.clip(0.3, 3.0)
        mutant = (anchors * torch.from_numpy(factor).float()).clamp(min=MIN_ANCHOR_PX)
        fitness = autoanchor_fitness(mutant, boxes32, threshold)
        if fitness > best:
            best, anchors = fitness, mutant
    anchors = anchors.double()
    return anchors[by_area(anchors)]
