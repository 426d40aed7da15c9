"""The YOLOv5 autoanchor baseline, re-implemented from its documented algorithm: its fitness on a
hand-computed example, the search that only keeps improvements, determinism, the k-means fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.fit.autoanchor import (
    autoanchor,
    autoanchor_fitness,
    best_ratio,
    euclidean_kmeans,
    whitened_kmeans,
)


def test_fitness_on_a_hand_computed_example():
    anchors = torch.tensor([[10.0, 10.0], [40.0, 20.0]])
    boxes = torch.tensor([[10.0, 10.0], [20.0, 10.0], [5.0, 40.0]])
    # x = min over w, h of min(r, 1/r), r = box / anchor; best over anchors:
    #   10 x 10: anchor 0 matches exactly (1), anchor 1 gives min(0.25, 0.5) -> 1
    #   20 x 10: anchor 0 min(0.5, 1), anchor 1 min(0.5, 0.5) -> 0.5
    #   5 x 40: anchor 0 min(0.5, 0.25), anchor 1 min(0.125, 0.5) -> 0.25, not above 1/4: counts 0
    assert best_ratio(anchors, boxes).tolist() == [1.0, 0.5, 0.25]
    assert autoanchor_fitness(anchors, boxes) == pytest.approx((1 + 0.5 + 0) / 3)
    assert autoanchor_fitness(anchors, boxes, threshold=5.0) == pytest.approx((1 + 0.5 + 0.25) / 3)


def mixture(n: int = 800, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([[12.0, 12.0], [16.0, 40.0], [42.0, 18.0], [72.0, 56.0]])
    k = torch.randint(0, len(shapes), (n,), generator=g)
    return (shapes.log()[k] + 0.25 * torch.randn(n, 2, generator=g)).exp().double()


def test_the_search_only_keeps_improvements_over_the_whitened_kmeans_start():
    boxes = mixture()
    start = torch.from_numpy(whitened_kmeans(boxes.numpy(), 4, seed=0))
    unsearched = autoanchor(boxes, 4, generations=0)  # the search works in float32, as YOLOv5's does
    torch.testing.assert_close(unsearched, start[start.prod(-1).argsort(stable=True)], rtol=1e-6, atol=0)
    searched = autoanchor(boxes, 4, generations=300)
    assert autoanchor_fitness(searched, boxes) >= autoanchor_fitness(start, boxes)
    assert bool((searched >= 2.0).all())  # mutants are kept at least 2 px


def test_same_seed_same_anchors_sorted_by_area():
    boxes = mixture()
    a, b = autoanchor(boxes, 4, seed=1, generations=200), autoanchor(boxes, 4, seed=1, generations=200)
    assert torch.equal(a, b)
    areas = a.prod(-1)
    assert bool((areas[1:] >= areas[:-1]).all())


def test_the_numpy_kmeans_fallback_finds_what_scipy_finds():
    pytest.importorskip("scipy", reason="scipy (from the train extra) is what the fallback stands in for")
    from scipy.cluster.vq import kmeans

    rng = np.random.default_rng(0)
    obs = np.concatenate([rng.normal(c, 0.3, (300, 2)) for c in ([0, 0], [3, 3], [0, 4])])
    ours, _ = euclidean_kmeans(obs, 3, 10, seed=0)
    theirs, _ = kmeans(obs, 3, 10, seed=0)
    np.testing.assert_allclose(np.sort(ours, 0), np.sort(theirs, 0), atol=1e-6)
