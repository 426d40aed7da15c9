"""The anchors picture of a running job, drawn from the store without torch (trainer.artifacts.plots is
numpy and matplotlib only): the training boxes' density (boxes.npy) with every anchor's path from
its start to the latest snapshot. Pictures are cached by (job, latest step)."""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict

import numpy as np

from trainer.contract.documents import AnchorSnapshot
from trainer.contract.layout import BOXES_KEY, DATASET_KEY
from trainer.contract.storage import NotFound
from trainer.contract.store import JobStore

CACHED = 64  # pictures kept in memory


class AnchorPlots:
    def __init__(self, store: JobStore):
        self.store = store
        self._cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def draw(self, job_id: str, snapshots: list[AnchorSnapshot]) -> bytes:
        key = (job_id, snapshots[-1].step)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        from trainer.artifacts.plots import plot_anchors  # matplotlib: only once a picture is asked for

        picture = plot_anchors(
            self._boxes(job_id),
            np.array([s.anchors for s in snapshots], dtype=float),
            image_size=snapshots[-1].image_size,
            true_shapes=self._true_shapes(job_id),
            title=f"job {job_id}: anchors at step {snapshots[-1].step} of {snapshots[-1].total_steps}",
            levels=snapshots[-1].levels,
            strides=snapshots[-1].strides,
        )
        with self._lock:
            self._cache[key] = picture
            while len(self._cache) > CACHED:
                self._cache.popitem(last=False)
        return picture

    def _boxes(self, job_id: str) -> np.ndarray:
        try:
            data = self.store.storage.read_bytes(self.store.key(job_id, BOXES_KEY))
        except NotFound:  # a run from before boxes.npy existed: anchors alone
            return np.zeros((0, 2))
        return np.load(io.BytesIO(data), allow_pickle=False)

    def _true_shapes(self, job_id: str):
        try:
            dataset = json.loads(self.store.storage.read_bytes(self.store.key(job_id, DATASET_KEY)))
        except NotFound:
            return None
        return dataset.get("true_shapes")
