"""Helpers of the training tests: a fresh state on the small config's data, and a run up to a step."""

from trainer.data.datasets import build_datasets
from trainer.train.batches import epoch_batches
from trainer.train.state import build_state
from trainer.train.step import train_step


def fresh(cfg):
    data = build_datasets(cfg)
    return build_state(cfg, data.train.boxes_wh(), len(data.train), data.num_classes), data.train


def run_until(state, data, step):
    while state.step < step:
        for images, targets in epoch_batches(state, data):
            train_step(state, images, targets)
            if state.step >= step:
                return
