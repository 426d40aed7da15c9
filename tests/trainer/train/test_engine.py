import io
import random

import numpy as np
import pytest
import torch

from tests.helpers import small_config
from trainer.data.datasets import build_datasets
from trainer.train.engine import (
    CHECKPOINT_VERSION,
    EpochSampler,
    build_state,
    checkpoint_bytes,
    epoch_batches,
    parameter_groups,
    restore_checkpoint,
    train_step,
)


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


class RunsCode:
    """What someone able to write to the store could put in a checkpoint: unpickling it runs code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _saved(payload: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def _contents(state) -> dict:
    return torch.load(io.BytesIO(checkpoint_bytes(state)), weights_only=False)  # our own: trusted


def test_checkpoints_hold_only_tensors_and_plain_values():
    """Finding 14 of issue 14: the RNG states (numpy's ndarray) needed weights_only=False."""
    state, _ = fresh(small_config())
    payload = torch.load(io.BytesIO(checkpoint_bytes(state)), weights_only=True)
    assert payload["version"] == CHECKPOINT_VERSION == 2 and len(payload["rng"]["numpy"]["key"]) == 624


def test_every_global_rng_comes_back_exactly():
    state, _ = fresh(small_config())
    np.random.randn(), random.gauss(0, 1)  # each now holds a cached second gaussian: part of the state
    data = checkpoint_bytes(state)

    def draws():
        numpy = [*np.random.rand(2), np.random.randn()]
        return [*torch.rand(2).tolist(), *numpy, random.random(), random.gauss(0, 1)]

    expected = draws()
    restore_checkpoint(state, data, "ck.pt")
    assert draws() == expected


def test_a_checkpoint_whose_pickle_runs_code_is_refused_without_running_it(tmp_path):
    state, _ = fresh(small_config())
    marker = tmp_path / "ran"
    evil = _contents(state) | {"model": {"backbone.weight": RunsCode(marker)}}
    try:
        restore_checkpoint(state, _saved(evil), "evil.pt")
        error = "restored"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    assert not marker.exists(), "restoring the checkpoint ran the code in its pickle"
    assert error.startswith("ValueError: evil.pt: refused: it holds objects other than tensors"), error


def test_an_older_or_broken_checkpoint_is_a_clear_error_naming_it(tmp_path):
    state, _ = fresh(small_config())
    payload = _contents(state)
    old_rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    v1 = payload | {"version": 1, "rng": old_rng}  # what version 1 wrote
    with pytest.raises(ValueError, match=r"v1.pt: refused(.|\n)*version 1(.|\n)*start the run again"):
        restore_checkpoint(state, _saved(v1), "v1.pt")
    with pytest.raises(ValueError, match="old.pt: checkpoint version 1 is not 2"):
        restore_checkpoint(state, _saved(payload | {"version": 1}), "old.pt")
    with pytest.raises(ValueError, match="cut.pt: not a readable checkpoint"):
        restore_checkpoint(state, checkpoint_bytes(state)[:1000], "cut.pt")


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
