"""trainer.train.state: the optimizer's groups (anchors apart, never decayed), batch size per rank."""

import pytest
import torch

from tests.helpers import small_config
from tests.trainer.train.runs import fresh, run_until
from trainer.data.datasets import build_datasets
from trainer.train.state import build_state, parameter_groups


def test_anchors_have_their_own_group_and_no_decay():
    cfg = small_config("anchors.lr=0.05", "optim.weight_decay=0.01")
    state, _ = fresh(cfg)
    groups = {g["name"]: g for g in state.optimizer.param_groups}
    assert groups["anchors"]["params"] == [state.model.anchors.log_wh]
    assert groups["anchors"]["weight_decay"] == 0.0 and groups["anchors"]["initial_lr"] == 0.05
    others = [p for name, g in groups.items() if name != "anchors" for p in g["params"]]
    assert all(p is not state.model.anchors.log_wh for p in others)
    assert groups["decay"]["weight_decay"] == 0.01 and all(p.ndim > 1 for p in groups["decay"]["params"])
    n_trainable = sum(1 for p in state.model.parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in groups.values()) == n_trainable


def test_frozen_anchors_are_in_no_group_and_never_move():
    cfg = small_config("anchors.learn=false")
    state, data = fresh(cfg)
    assert "anchors" not in {g["name"] for g in parameter_groups(state.model, cfg)}
    before = state.model.anchors.log_wh.detach().clone()
    run_until(state, data, 3)
    assert torch.equal(state.model.anchors.log_wh, before)


def test_learned_anchors_move():
    state, data = fresh(small_config())
    before = state.model.anchors.log_wh.detach().clone()
    run_until(state, data, 3)
    assert not torch.equal(state.model.anchors.log_wh, before)


def test_batch_larger_than_the_data_is_a_clear_error():
    cfg = small_config("optim.batch_size=128")
    with pytest.raises(ValueError, match="batch_size"):
        fresh(cfg)


def test_batch_size_is_per_rank_so_an_epoch_has_fewer_global_steps():
    cfg = small_config()  # 64 images, batch 8
    data = build_datasets(cfg)
    one = build_state(cfg, data.train.boxes_wh(), len(data.train), data.num_classes)
    two = build_state(cfg, data.train.boxes_wh(), len(data.train), data.num_classes, rank=1, world_size=2)
    assert (one.steps_per_epoch, two.steps_per_epoch) == (8, 4) and two.rank == 1
    torch.testing.assert_close(two.model.anchors.log_wh, one.model.anchors.log_wh)  # every rank starts equal
    with pytest.raises(ValueError, match="x 16 workers is larger than the training set"):
        build_state(cfg, data.train.boxes_wh(), len(data.train), data.num_classes, world_size=16)
