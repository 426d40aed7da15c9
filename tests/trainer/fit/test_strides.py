"""Each level's stride: the defaults, the checks, and the floor --min-stride-fraction puts under them."""

from __future__ import annotations

import pytest
import torch

from trainer.fit.strides import check_strides, default_strides, levels_of, stride_floor


def test_default_strides_end_at_32_and_one_level_keeps_its_stride():
    assert default_strides(1) == [32] and default_strides(1, 16) == [16]
    assert default_strides(2) == [16, 32] and default_strides(3) == [8, 16, 32]
    assert default_strides(4) == [8, 16, 32, 64]
    with pytest.raises(ValueError, match="give --strides"):
        default_strides(5)


@pytest.mark.parametrize(
    ("strides", "levels", "message"),
    [([8, 0], None, "positive"), ([16, 8], None, "ascending"), ([8, 8], None, "distinct"),
     ([8, 16], 3, "lists 2 strides but --levels is 3"), ([], None, "positive")],
)  # fmt: skip
def test_bad_strides_name_the_flag(strides, levels, message):
    with pytest.raises(ValueError, match=message):
        check_strides(strides, levels)


def test_floor_raises_only_what_is_under_it_and_keeps_rows_in_place():
    wh = torch.tensor([[30.0, 40.0], [3.0, 5.0], [100.0, 90.0], [12.0, 9.0]], dtype=torch.float64)
    got = stride_floor(wh, [8, 16], 1.0)  # ranks by area: rows 1, 3 on stride 8; rows 0, 2 on 16
    assert got.tolist() == [[30.0, 40.0], [8.0, 8.0], [100.0, 90.0], [12.0, 9.0]]
    assert levels_of(got, 2) == [1, 0, 1, 0]
    assert torch.equal(stride_floor(wh, [8, 16], None), wh)
