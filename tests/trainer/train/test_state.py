"""trainer.train.state: the optimizer's groups (anchors apart, never decayed), batch size per rank."""

import pytest
import torch

from tests.helpers import small_config
from tests.trainer.train.runs import fresh, run_until
from trainer.data.datasets import build_datasets
from trainer.train.state import build_state, lr_factors, parameter_groups


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


def _factors(cfg, steps_per_epoch=10, names=("decay", "anchors", "pretrained_decay")):
    fns = lr_factors(cfg, steps_per_epoch, [{"name": n} for n in names])
    return lambda name, step: fns[names.index(name)](step)


def test_burn_in_ramps_with_darknets_power_then_the_step_schedule_divides():
    cfg = small_config(
        "optim.epochs=10", "optim.lr_warmup_steps=8", "optim.lr_warmup_power=4",
        "optim.schedule=step", "optim.lr_step_epochs=[6, 8]", "optim.lr_step_factor=0.1",
    )  # fmt: skip
    f = _factors(cfg)
    assert f("decay", 3) == pytest.approx((4 / 8) ** 4)  # darknet's burn_in: (step / burn_in) ** 4
    assert f("decay", 7) == f("decay", 59) == 1.0
    assert f("decay", 60) == pytest.approx(0.1) and f("decay", 80) == pytest.approx(0.01)
    assert f("anchors", 0) == 1.0 and f("anchors", 60) == pytest.approx(0.1)  # no ramp, same steps


def test_pretrained_layers_are_frozen_then_scaled():
    cfg = small_config(
        "optim.epochs=10", "optim.freeze_pretrained_epochs=2", "optim.pretrained_lr_factor=0.1"
    )
    f = _factors(cfg)
    assert f("pretrained_decay", 0) == f("pretrained_decay", 19) == 0.0
    assert f("pretrained_decay", 20) == pytest.approx(0.1 * f("decay", 20))


def test_a_step_schedule_needs_its_epochs_in_order():
    with pytest.raises(ValueError, match="optim.schedule 'step' needs optim.lr_step_epochs"):
        small_config("optim.schedule=step")
    with pytest.raises(ValueError, match="increasing epochs"):
        small_config("optim.lr_step_epochs=[8, 6]")


def test_pretrained_parameters_get_their_own_groups_and_no_parameter_is_lost():
    cfg = small_config("optim.weight_decay=0.01")
    state, _ = fresh(cfg)
    names = frozenset(n for n, _ in state.model.named_parameters() if n.startswith("backbone."))
    groups = {g["name"]: g for g in parameter_groups(state.model, cfg, names)}
    assert set(groups) == {"decay", "no_decay", "pretrained_decay", "pretrained_no_decay", "anchors"}
    by_id = {id(p): n for n, p in state.model.named_parameters()}
    assert {
        by_id[id(p)] for k in ("pretrained_decay", "pretrained_no_decay") for p in groups[k]["params"]
    } == names
    assert (
        groups["pretrained_decay"]["weight_decay"] == 0.01
        and groups["pretrained_no_decay"]["weight_decay"] == 0
    )
    assert sum(len(g["params"]) for g in groups.values()) == sum(1 for p in state.model.parameters())


def test_a_darknet_backbone_loads_into_its_own_frozen_groups(tmp_path):
    """model.pretrained = a darknet19_448.conv.23-style file: its 18 convs load, get the pretrained
    groups, and stay put while frozen; the rest of the network trains."""
    from trainer.model.darknet_weights import BACKBONE_LAYERS, write_darknet_weights

    base = [
        "model.backbone=darknet19",
        "model.image_size=64",
        "optim.batch_size=4",
        "data.synthetic.num_train=8",
    ]
    donor, _ = fresh(small_config(*base, "seed=7"))
    path = tmp_path / "darknet19_448.conv.23"
    with path.open("wb") as f:
        write_darknet_weights(donor.model, f, upto=BACKBONE_LAYERS)
    state, data = fresh(small_config(*base, f"model.pretrained={path}", "optim.freeze_pretrained_epochs=1"))
    loaded = set(state.pretrained.loaded)
    assert len([k for k in loaded if k.endswith(".0.weight")]) == BACKBONE_LAYERS  # 18 conv weights
    donor_state = donor.model.state_dict()
    assert all(torch.equal(state.model.state_dict()[k], donor_state[k]) for k in loaded)
    groups = {g["name"]: g for g in state.optimizer.param_groups}
    ids = {id(p) for k in ("pretrained_decay", "pretrained_no_decay") for p in groups[k]["params"]}
    assert ids == {id(p) for n, p in state.model.named_parameters() if n in loaded}
    assert groups["pretrained_decay"]["lr"] == 0.0  # frozen in the first epoch
    before = {n: p.detach().clone() for n, p in state.model.named_parameters()}
    run_until(state, data, 1)
    after = dict(state.model.named_parameters())
    assert all(torch.equal(after[n], before[n]) for n in loaded if n in after)
    assert not torch.equal(after["head.pred.weight"], before["head.pred.weight"])
