"""trainer.train.batches: seeded epoch orders, each rank's slice of a global batch."""

from trainer.train.batches import EpochSampler


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
