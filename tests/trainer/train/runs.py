"""Helpers of the training tests: a fresh state on the small config's data, a run up to a step, and
jobs of the small config submitted to a store for Ray Train."""

from tests.helpers import small_config
from trainer.contract.spec import JobSpec, Resources
from trainer.contract.store import JobStore
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


PNG = b"\x89PNG\r\n\x1a\n"
# 64 images in global batches of 16 (2 workers x 8): 4 steps an epoch, 12 in all; snapshots every
# 3 steps and at epoch ends (3, 4, 6, 8, 9, 12); a checkpoint at each epoch end (4, 8, 12).
JOB = [
    "optim.epochs=3",
    "output.snapshot_every=3",
    "eval.every_epochs=0",
    "optim.optimizer=sgd",
    "anchors.lr=0.2",
]
WORKERS = Resources(workers=2, cpus_per_worker=1, max_failures=1)


def submit(store: JobStore, *overrides: str, resources: Resources = WORKERS) -> str:
    cfg = small_config(*JOB, *overrides)
    spec = JobSpec.model_validate(cfg.model_dump() | {"resources": resources.model_dump()})
    return store.create(spec).id
