import pytest
import torch

from trainer.data.datasets import build_datasets
from trainer.engine import (
    EpochSampler,
    build_state,
    checkpoint_bytes,
    epoch_batches,
    parameter_groups,
    restore_checkpoint,
    train_step,
)

from .conftest import small_config


def fresh(cfg):
    data = build_datasets(cfg)
    return build_state(cfg, data.train.boxes_wh(), len(data.train), data.num_classes), data.train


def run_until(state, data, step):
    while state.step < step:
        for images, targets in epoch_batches(state, data):
            train_step(state, images, targets)
            if state.step >= step:
                return


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


def test_sampler_is_a_seeded_permutation_per_epoch():
    a = list(EpochSampler(20, seed=1, epoch=0, batch=4))
    assert sorted(i for i, _ in a) == list(range(20))
    assert len({seed for _, seed in a}) == 20  # every sample its own augmentation seed
    assert a == list(EpochSampler(20, seed=1, epoch=0, batch=4))
    assert a != list(EpochSampler(20, seed=1, epoch=1, batch=4))
    assert list(EpochSampler(20, seed=1, epoch=0, batch=4, start_step=2)) == a[8:]
    assert len(list(EpochSampler(22, seed=1, epoch=0, batch=4))) == 20  # whole batches only


def test_ranks_split_each_global_batch_like_one_process_with_all_of_it():
    one = list(EpochSampler(50, seed=3, epoch=2, batch=8))  # 6 steps of 8
    ranks = [list(EpochSampler(50, seed=3, epoch=2, batch=4, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 24
    for step in range(6):
        together = ranks[0][step * 4 : step * 4 + 4] + ranks[1][step * 4 : step * 4 + 4]
        assert together == one[step * 8 : step * 8 + 8]  # same images and augmentation seeds
    resumed = list(EpochSampler(50, seed=3, epoch=2, batch=4, start_step=4, rank=1, world_size=2))
    assert resumed == ranks[1][16:]


def test_checkpoint_mid_warmup_restores_exactly(tmp_path):
    # 8 steps per epoch, warm-up 6 steps: stop at step 4 (mid warm-up, mid epoch), restore, go on
    # across the end of warm-up and an epoch boundary; compare with a run that never stopped.
    cfg = small_config("tricks.warmup_steps=6")
    total = 12
    straight, data = fresh(cfg)
    run_until(straight, data, total)

    first, data = fresh(cfg)
    run_until(first, data, 4)
    assert first.in_warmup
    (tmp_path / "ck.pt").write_bytes(checkpoint_bytes(first))
    torch.manual_seed(12345)  # disturb the global RNG: the checkpoint must restore it

    resumed, data = fresh(cfg)
    restore_checkpoint(resumed, (tmp_path / "ck.pt").read_bytes(), "ck.pt")
    assert resumed.step == 4 and resumed.in_warmup
    run_until(resumed, data, total)

    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    sa, sb = straight.optimizer.state_dict(), resumed.optimizer.state_dict()
    for key, st in sa["state"].items():
        for field, value in st.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(sb["state"][key][field])), (key, field)
    assert straight.scheduler.get_last_lr() == resumed.scheduler.get_last_lr()


def test_checkpoint_from_another_config_is_refused(tmp_path):
    state, _ = fresh(small_config())
    (tmp_path / "ck.pt").write_bytes(checkpoint_bytes(state))
    other, _ = fresh(small_config("anchors.lr=0.5"))
    with pytest.raises(ValueError, match="anchors.lr"):
        restore_checkpoint(other, (tmp_path / "ck.pt").read_bytes(), "ck.pt")


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
