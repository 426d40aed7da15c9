"""Collating detection samples into batches, and batch-level augmentation that keeps boxes right."""

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


def hflip(images: Tensor, targets: Tensor, flip: Tensor) -> tuple[Tensor, Tensor]:
    """Mirrors the images where `flip` [B] is true, and their boxes with them."""
    if not bool(flip.any()):
        return images, targets
    images = images.clone()
    images[flip] = images[flip].flip(-1)
    targets = targets.clone()
    width = images.shape[-1]
    rows = flip[targets[:, 0].long()]
    x1 = targets[rows, 2].clone()
    targets[rows, 2] = width - targets[rows, 4]
    targets[rows, 4] = width - x1
    return images, targets
