"""An FPN-style neck: the backbone's maps at the requested strides, merged top-down, one per level.

For each stride of model.levels the neck takes the backbone's map at that stride (trainer.model.detector
backbones expose theirs through `features()`); a stride past the backbone's deepest map gets a chain of
3x3 stride-2 layers from it. Each map goes through a 1x1 lateral layer to the neck's width; from the
coarsest level down, the coarser result is upsampled (nearest, x2 per level) and added, and a 3x3 layer
smooths the sum (Lin et al., "Feature Pyramid Networks", 2017, as YOLOv3 merges its scales). So the
finest level's features see the coarse context and every head reads maps of the same width.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from trainer.model.layers import conv_bn

# Neck channels: tiny's 64 x model.width (its stride-8 map's own width), darknet19's 256 (YOLOv3's P3).
NECK_WIDTH = {"TinyBackbone": 64, "Darknet19": 256}


class FeaturePyramid(nn.Module):
    """The backbone's {stride: map} -> [one map per stride in `strides`, each [B, channels, S/s, S/s]]."""

    def __init__(self, backbone: nn.Module, strides: list[int], width: float = 1.0):
        super().__init__()
        self.strides = list(strides)
        have = backbone.feature_channels()
        finest = min(have)
        if min(strides) < finest:
            raise ValueError(
                f"model.levels: stride {min(strides)} is finer than the backbone's finest map ({finest})"
            )
        deepest = max(have)
        chans = dict(have)
        extra = []  # stride-2 layers past the deepest map
        s = deepest
        while s < max(strides):
            extra.append(conv_bn(chans[s], chans[s], stride=2))
            chans[s * 2] = chans[s]
            s *= 2
        self.extra = nn.ModuleList(extra)
        base = NECK_WIDTH.get(type(backbone).__name__, 64)
        self.channels = max(8, int(base * (width if type(backbone).__name__ == "TinyBackbone" else 1)))
        self.lateral = nn.ModuleList(conv_bn(chans[s], self.channels, 1) for s in self.strides)
        self.smooth = nn.ModuleList(conv_bn(self.channels, self.channels) for _ in self.strides)

    def forward(self, maps: dict[int, Tensor]) -> list[Tensor]:
        maps = dict(maps)
        s = max(maps)
        for layer in self.extra:
            maps[s * 2] = layer(maps[s])
            s *= 2
        out: list[Tensor] = [None] * len(self.strides)  # type: ignore[list-item]
        above = None
        for i in reversed(range(len(self.strides))):
            x = self.lateral[i](maps[self.strides[i]])
            if above is not None:
                x = x + F.interpolate(above, size=x.shape[-2:], mode="nearest")
            above = x
            out[i] = self.smooth[i](x)
        return out
