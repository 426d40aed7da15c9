import pytest
import torch

from tests.helpers import small_config
from trainer.model.levels import anchor_levels, anchor_strides, by_area, level_anchors, split_by_area


def test_split_by_area_gives_the_smallest_to_the_finest_level():
    wh = torch.tensor([[100.0, 90], [10, 13], [30, 61], [16, 30], [62, 45], [33, 23]])
    fine, coarse = split_by_area(wh, 2)
    assert fine.tolist() == [[10, 13], [16, 30], [33, 23]] and coarse.tolist() == [
        [30, 61],
        [62, 45],
        [100, 90],
    ]
    assert by_area(torch.tensor([[2.0, 2], [1, 4], [1, 1]])).tolist() == [2, 0, 1]  # ties keep their order
    with pytest.raises(ValueError, match="5 anchors do not split into 2 levels"):
        split_by_area(wh[:5], 2)


def test_each_anchor_knows_its_level_and_stride():
    assert anchor_levels(6, 3) == [0, 0, 1, 1, 2, 2]
    assert anchor_strides(6, [8, 16, 32]) == [8, 8, 16, 16, 32, 32]
    assert anchor_levels(5, 1) == [0] * 5


@pytest.mark.parametrize("init", ["uniform", "kmeans", "identical"])
def test_every_init_fills_the_levels_sorted_by_area(init):
    cfg = small_config("model.levels=[8, 16, 32]", f"anchors.init={init}")
    boxes = torch.exp(torch.randn(500, 2, generator=torch.Generator().manual_seed(0)) * 0.8 + 3)
    wh = level_anchors(cfg, boxes)
    assert wh.shape == (9, 2)
    area = wh.prod(1)
    assert torch.equal(area, area.sort().values)


def test_a_listed_init_is_sorted_into_levels_and_must_have_every_levels_anchors():
    pairs = [[100, 90], [10, 13], [30, 61], [16, 30]]
    cfg = small_config(
        "model.levels=[8, 16]", "anchors.num=2", "anchors.init=list", f"anchors.values={pairs}"
    )
    assert level_anchors(cfg, None).tolist() == [[10, 13], [16, 30], [30, 61], [100, 90]]
    one = small_config("anchors.num=4", "anchors.init=list", f"anchors.values={pairs}")
    assert level_anchors(one, None).tolist() == pairs  # one level: as given, as before
    with pytest.raises(ValueError, match="anchors.values has 4 pairs but 3 on each of 2 model.levels"):
        small_config("model.levels=[8, 16]", "anchors.num=3", "anchors.init=list", f"anchors.values={pairs}")
