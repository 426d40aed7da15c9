"""Keeping the levels ordered by anchor area while the anchors learn (anchors.level_order: area).

The anchors start sorted by area, the smallest A on the finest level (trainer.model.levels), but
nothing in the loss keeps them there: a stride-32 anchor can shrink below a stride-8 one (YOLOv5
#117), and then small boxes are predicted from coarse cells. At each snapshot after the warm-up
(`keep_levels_ordered`; during it the soft assignment shares every box over every level, and the
anchors are still splitting apart) `reorder_by_area` checks the order and, where an anchor has
crossed into another level's range, moves it there:
anchors whose level is still right keep their slot; the others fill the slots that were vacated, in
order of area. The anchor parameter's rows, the optimizer's state for them and the run's initial
anchors (row k is where anchor k started) are permuted together, so the run goes on as if the
anchors had started in those slots. A level's head channels stay where they are: with the
shift-free batch norm their size offsets are centred on whatever anchor the slot holds.

Every DDP rank holds the same anchors (DDP keeps them equal) and calls this at the same steps, so
every rank makes the same permutation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from trainer.model.levels import anchor_levels, by_area


def level_permutation(wh: Tensor, num_levels: int) -> list[int] | None:
    """new slot -> old row of the [L * A, 2] anchors so that the levels are ordered by area, or None
    when they already are (every anchor of a level no larger than every anchor of the next)."""
    total = len(wh)
    if num_levels < 2:
        return None
    per = total // num_levels
    now = anchor_levels(total, num_levels)
    rank = torch.empty(total, dtype=torch.long)
    rank[by_area(wh)] = torch.arange(total)
    target = [int(r) // per for r in rank]
    if target == now:
        return None
    perm = list(range(total))
    for level in range(num_levels):
        slots = [k for k in range(total) if now[k] == level and target[k] != level]  # vacated
        movers = sorted(
            (j for j in range(total) if target[j] == level and now[j] != level), key=lambda j: int(rank[j])
        )
        for slot, j in zip(slots, movers, strict=True):
            perm[slot] = j
    return perm


@torch.no_grad()
def reorder_by_area(state) -> list[int] | None:
    """Applies `level_permutation` to the state's anchors, optimizer state and initial anchors;
    returns the permutation, or None when nothing moved (or the model has one level)."""
    anchors = state.model.anchors
    perm = level_permutation(anchors.wh().detach().cpu(), len(state.model.strides))
    if perm is None:
        return None
    index = torch.tensor(perm, device=anchors.log_wh.device)
    anchors.log_wh.copy_(anchors.log_wh[index])
    for value in state.optimizer.state.get(anchors.log_wh, {}).values():
        if isinstance(value, Tensor) and value.shape[:1] == anchors.log_wh.shape[:1]:
            value.copy_(value[index.to(value.device)])
    state.init_anchors = state.init_anchors[torch.tensor(perm)]
    return perm


def keep_levels_ordered(state) -> list[int] | None:
    """What the run does at each snapshot: with anchors.level_order area, on several levels, once the
    warm-up is over, `reorder_by_area`. Returns the permutation made, or None."""
    if state.cfg.anchors.level_order != "area" or len(state.model.strides) < 2 or state.in_warmup:
        return None
    return reorder_by_area(state)
