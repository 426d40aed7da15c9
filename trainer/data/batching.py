"""Collating detection samples into batches."""

from __future__ import annotations

import torch
from torch import Tensor


def collate(samples: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """-> (uint8 images [B, 3, S, S], targets [M, 6] = image index in batch, class, x1, y1, x2, y2).

    Boxes of all images are concatenated with their image index (images may have zero boxes),
    so assignment and loss can work on the whole batch at once.
    """
    images = torch.stack([im for im, _ in samples])
    parts = [torch.cat([torch.full((len(t), 1), float(i)), t], dim=1) for i, (_, t) in enumerate(samples)]
    targets = torch.cat(parts) if parts else torch.zeros(0, 6)
    return images, targets
