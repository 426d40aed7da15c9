import torch

from tests.helpers import small_config
from tests.trainer.train.runs import fresh, run_until
from trainer.train.level_order import level_permutation, reorder_by_area


def test_only_anchors_that_crossed_a_level_move_and_into_the_slots_that_were_vacated():
    wh = torch.tensor([[5.0, 5], [6, 6], [50, 50], [7, 7], [8, 8], [9, 9]])  # 50x50 sits on level 1 of 3
    perm = level_permutation(wh, 3)
    assert perm == [0, 1, 4, 3, 2, 5]  # the 8x8 takes its slot on level 1, it takes the 8x8's on level 2
    moved = wh[perm]
    areas = moved.prod(1).view(3, 2)
    assert areas[0].max() <= areas[1].min() and areas[1].max() <= areas[2].min()
    assert level_permutation(wh[perm], 3) is None  # ordered: nothing to do
    assert level_permutation(wh, 1) is None  # one level has no order to keep


def test_reordering_moves_the_anchor_its_optimizer_state_and_its_start_together():
    cfg = small_config("model.levels=[8, 16, 32]", "optim.optimizer=adamw")
    state, data = fresh(cfg)
    run_until(state, data, 2)  # the optimizer has state for the anchors now
    anchors = state.model.anchors.log_wh
    with torch.no_grad():
        anchors[8] = torch.tensor([1.0, 1.0])  # the coarsest level's largest anchor shrinks to e x e px
    moments = {k: v.clone() for k, v in state.optimizer.state[anchors].items() if k != "step"}
    before, start = anchors.detach().clone(), state.init_anchors.clone()
    perm = reorder_by_area(state)
    assert perm is not None and 8 in perm[:3]  # it is now on the finest level, in a slot one vacated
    torch.testing.assert_close(anchors.detach(), before[perm])
    torch.testing.assert_close(state.init_anchors, start[perm])
    for k, v in moments.items():
        torch.testing.assert_close(state.optimizer.state[anchors][k], v[perm])
    wh = state.model.anchors.wh().detach().prod(1).view(3, 3)
    assert wh[0].max() <= wh[1].min() and wh[1].max() <= wh[2].min()
    run_until(state, data, 4)  # and training goes on from there
    assert torch.isfinite(state.model.anchors.log_wh).all()


def test_the_run_keeps_levels_ordered_only_after_the_warm_up_and_when_asked():
    from trainer.train.level_order import keep_levels_ordered

    def shrunk(*overrides):
        state, data = fresh(small_config("model.levels=[8, 16, 32]", *overrides))
        with torch.no_grad():
            state.model.anchors.log_wh[8] = torch.tensor([1.0, 1.0])
        return state, data

    state, data = shrunk("tricks.warmup_steps=3")
    assert state.in_warmup and keep_levels_ordered(state) is None  # the soft warm-up shares every level
    run_until(state, data, 3)
    with torch.no_grad():
        state.model.anchors.log_wh[8] = torch.tensor([1.0, 1.0])
    assert not state.in_warmup and keep_levels_ordered(state) is not None
    state, _ = shrunk("tricks.warmup_steps=0", "anchors.level_order=none")
    assert keep_levels_ordered(state) is None
    one, _ = fresh(small_config("tricks.warmup_steps=0"))
    assert keep_levels_ordered(one) is None  # one level: nothing to order
