"""The data order of a run: each epoch a permutation seeded by (seed, epoch), each sample's
augmentation seeded by (seed, epoch, position), cut into the ranks' slices of every global batch. So
the order is a function of the step alone, which is what makes a resumed run continue exactly."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from trainer.config import TrainConfig
from trainer.data.batching import collate
from trainer.train.state import TrainState


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The augmentation seed of the sample at `position` of `epoch`'s order."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


class EpochSampler(Sampler[tuple[int, int]]):
    """(index, augmentation seed) pairs of one rank, in a permutation seeded by (seed, epoch).

    The epoch's order is cut into global batches of `batch * world_size` positions; at each step
    rank r takes the r-th slice of `batch`. So the ranks of a step together see exactly the images
    (and augmentations: the seed follows the position) one process with the whole global batch
    would, whatever the number of workers. Starts at step `start_step` (to resume mid-epoch).
    """

    def __init__(
        self,
        size: int,
        seed: int,
        epoch: int,
        batch: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.size, self.seed, self.epoch, self.batch = size, seed, epoch, batch
        self.start_step, self.rank, self.world_size = start_step, rank, world_size
        self.steps = size // (batch * world_size)

    def positions(self) -> Iterator[int]:
        for step in range(self.start_step, self.steps):
            first = (step * self.world_size + self.rank) * self.batch
            yield from range(first, first + self.batch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=gen).tolist()
        return ((order[p], sample_seed(self.seed, self.epoch, p)) for p in self.positions())

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.batch


def epoch_batches(state: TrainState, dataset) -> DataLoader:
    """This rank's remaining batches of the state's current epoch, in their fixed order."""
    bs = state.cfg.optim.batch_size
    sampler = EpochSampler(
        len(dataset),
        state.cfg.seed,
        state.epoch,
        bs,
        state.step % state.steps_per_epoch,
        state.rank,
        state.world_size,
    )
    return DataLoader(dataset, batch_size=bs, sampler=sampler, collate_fn=collate, drop_last=True,
                      **loader_workers(state.cfg))  # fmt: skip


def loader_workers(cfg: TrainConfig) -> dict:
    """Worker processes decode and augment real images; the synthetic set is already in memory."""
    workers = 0 if cfg.data.is_synthetic else cfg.data.workers
    return {"num_workers": workers, "prefetch_factor": 4 if workers else None}
