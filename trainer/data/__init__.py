"""Datasets: readers per format, the bad-data policy, augmentation, and the torch datasets.

Every torch dataset yields (uint8 image [3, S, S], float32 [k, 5] labels) where a label row is
(class id, x1, y1, x2, y2) in pixels at the model's input size; trainer.data.datasets describes the
protocol the engine relies on."""
