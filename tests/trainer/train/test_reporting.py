"""trainer.train.reporting: where the loss picture marks the end of the warm-up."""

from tests.helpers import small_config
from tests.trainer.train.runs import fresh
from trainer.train.reporting import _warmup_end


def test_the_warm_up_end_is_marked_only_when_it_ends_within_the_run():
    state, _ = fresh(small_config("tricks.warmup_steps=6"))  # 16 steps
    assert state.total_steps == 16 and _warmup_end(state) == 6
    longer, _ = fresh(small_config("tricks.warmup_steps=300"))  # the README's old example had this
    assert _warmup_end(longer) is None
    off, _ = fresh(small_config("tricks.soft_assign.enabled=false", "tricks.clustering.enabled=false"))
    assert _warmup_end(off) is None
