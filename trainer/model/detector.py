"""The detector: a backbone, a YOLOv2 prediction head, and the learned anchors as its parameter.

Output layout: raw predictions `[B, A, H, W, 5 + C]` with, per anchor and cell,
`(tx, ty, tw, th, objectness logit, C class logits)`. A box decodes as
`bx = (cx + sigmoid(tx)) * stride`, `bw = a_w * exp(tw)` (see trainer.model.decode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.config import BACKBONE_STRIDES, TrainConfig
from trainer.model.anchors import Anchors
from trainer.model.layers import conv_bn
from trainer.model.neck import FeaturePyramid


class TinyBackbone(nn.Module):
    """Six 3x3 conv layers, stride 16: fast enough to train on two CPU cores in a minute."""

    stride = BACKBONE_STRIDES["tiny"]

    def __init__(self, width: float = 1.0):
        super().__init__()
        c = [max(8, int(n * width)) for n in (16, 32, 64, 64, 128, 128)]
        self.layers = nn.Sequential(
            conv_bn(3, c[0], stride=2),
            conv_bn(c[0], c[1], stride=2),
            conv_bn(c[1], c[2], stride=2),
            conv_bn(c[2], c[3]),
            conv_bn(c[3], c[4], stride=2),
            conv_bn(c[4], c[5]),
        )
        self.out_channels = c[5]

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)

    def features(self, x: Tensor) -> dict[int, Tensor]:
        """{stride: feature map}: the stride-8 map (after the third stride-2 layer) and the output."""
        fine = self.layers[:4](x)
        return {8: fine, 16: self.layers[4:](fine)}

    def feature_channels(self) -> dict[int, int]:
        return {8: self.layers[3][0].out_channels, 16: self.out_channels}


def _space_to_depth(x: Tensor, block: int = 2) -> Tensor:
    """YOLOv2's reorg: [B, C, H, W] -> [B, C * block^2, H / block, W / block]."""
    return F.pixel_unshuffle(x, block)


def darknet_reorg(x: Tensor, block: int = 2) -> Tensor:
    """What darknet's `[reorg] stride=2` computes (reorg_cpu with forward=0 on the input's w, h, c).

    Darknet reads its [C, H, W] input's memory as [C / b^2, H b, W b], moves each b x b block of
    that into channels (offset-major: channel offset * C / b^2 + c), and hands the resulting
    [C, H, W] memory on as [C b^2, H / b, W / b]. Both reinterpretations mix rows, so this is not
    a channel permutation of `_space_to_depth`; yolo-voc.weights was trained on it.
    """
    b, c, h, w = x.shape
    y = F.pixel_unshuffle(x.reshape(b, c // block**2, h * block, w * block), block)  # channel c2*b^2 + off
    y = y.reshape(b, c // block**2, block**2, h, w).transpose(1, 2)  # channel off * C/b^2 + c2
    return y.reshape(b, c * block**2, h // block, w // block)


class Darknet19(nn.Module):
    """YOLOv2's Darknet-19 with its detection layers and the passthrough from the 26x26 map.

    Stride 32. Randomly initialised: no weights are downloaded, ever (model.pretrained loads a
    file the user provides). `reorg` folds the passthrough into channels: `space_to_depth`, or
    `darknet`'s own order (`darknet_reorg`), for a yolo-voc.weights fuse conv.
    """

    stride = BACKBONE_STRIDES["darknet19"]

    def __init__(self, reorg: str = "space_to_depth"):
        super().__init__()
        if reorg not in ("space_to_depth", "darknet"):
            raise ValueError(f"model.reorg: {reorg!r} is not 'space_to_depth' or 'darknet'")
        self.reorg = reorg
        pool = nn.MaxPool2d(2, 2)
        self.stage1 = nn.Sequential(
            conv_bn(3, 32), pool,
            conv_bn(32, 64), pool,
            conv_bn(64, 128), conv_bn(128, 64, 1), conv_bn(64, 128), pool,
            conv_bn(128, 256), conv_bn(256, 128, 1), conv_bn(128, 256), pool,
            conv_bn(256, 512), conv_bn(512, 256, 1), conv_bn(256, 512),
            conv_bn(512, 256, 1), conv_bn(256, 512),
        )  # fmt: skip
        self.stage2 = nn.Sequential(
            pool,
            conv_bn(512, 1024), conv_bn(1024, 512, 1), conv_bn(512, 1024),
            conv_bn(1024, 512, 1), conv_bn(512, 1024),
            conv_bn(1024, 1024), conv_bn(1024, 1024),
        )  # fmt: skip
        self.passthrough = conv_bn(512, 64, 1)
        self.fuse = conv_bn(1024 + 64 * 4, 1024)
        self.out_channels = 1024

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)[32]

    def features(self, x: Tensor) -> dict[int, Tensor]:
        """{stride: feature map}: 8 (the last 256-channel layer before the fourth pool), 16 (the
        passthrough's 26x26 source at 416 px) and 32 (the fused output)."""
        s8 = self.stage1[:11](x)
        fine = self.stage1[11:](s8)
        coarse = self.stage2(fine)
        fold = darknet_reorg if self.reorg == "darknet" else _space_to_depth
        return {8: s8, 16: fine, 32: self.fuse(torch.cat([fold(self.passthrough(fine)), coarse], dim=1))}

    def feature_channels(self) -> dict[int, int]:
        return {8: 256, 16: 512, 32: self.out_channels}


class ShiftFreeBatchNorm(nn.Module):
    """Batch norm with a learned scale and no learned shift (trick 3), over channels of [B, C, H, W].

    In training mode each channel's output has zero mean over the batch; there is no bias that
    could move it, so the mean box size must come from the anchors.
    """

    def __init__(self, channels: int, momentum: float = 0.03, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.momentum, self.eps = momentum, eps

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, None, self.training, self.momentum, self.eps
        )


class YoloHead(nn.Module):
    """1x1 conv to A * (5 + C) channels, reshaped to [B, A, H, W, 5 + C].

    With `bn_no_shift`, the 2A channels holding (tw, th) pass through a ShiftFreeBatchNorm.
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, bn_no_shift: bool):
        super().__init__()
        self.A, self.C = num_anchors, num_classes
        self.pred = nn.Conv2d(in_channels, num_anchors * (5 + num_classes), 1)
        self.wh_norm = ShiftFreeBatchNorm(2 * num_anchors) if bn_no_shift else None
        with torch.no_grad():  # objectness starts at p = 0.01 so background does not swamp early steps
            bias = self.pred.bias.view(num_anchors, 5 + num_classes)
            bias.zero_()
            bias[:, 4] = -4.6

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        p = self.pred(x).view(b, self.A, 5 + self.C, h, w)
        if self.wh_norm is not None:
            wh = self.wh_norm(p[:, :, 2:4].reshape(b, self.A * 2, h, w)).view(b, self.A, 2, h, w)
            p = torch.cat([p[:, :, :2], wh, p[:, :, 4:]], dim=2)
        return p.permute(0, 1, 3, 4, 2).contiguous()


class Detector(nn.Module):
    """Backbone + head(s) + anchors. `forward` returns (raw predictions, anchors' log w-h).

    One level (no model.levels): YOLOv2's head on the backbone's output, predictions one tensor.
    Several levels: an FPN-style neck (trainer.model.neck) and a head per level, predictions a tuple
    with one tensor per level, finest first; level l uses anchor rows l*A .. (l+1)*A - 1
    (trainer.model.levels). The anchors go through `forward` so that DDP sees them used like any
    other parameter.
    """

    def __init__(self, cfg: TrainConfig, anchors_wh: Tensor, num_classes: int):
        super().__init__()
        if cfg.model.backbone == "darknet19":
            self.backbone: nn.Module = Darknet19(cfg.model.reorg)
        else:
            self.backbone = TinyBackbone(cfg.model.width)
        self.strides: list[int] = cfg.strides
        self.stride: int = max(self.strides)  # what the input side must be a multiple of
        self.num_classes = num_classes  # from the dataset
        a, bn = cfg.anchors.num, cfg.tricks.bn_no_shift
        if cfg.model.levels is None:
            self.neck = None
            self.head = YoloHead(self.backbone.out_channels, a, self.num_classes, bn)
        else:
            self.neck = FeaturePyramid(self.backbone, self.strides, cfg.model.width)
            self.heads = nn.ModuleList(YoloHead(self.neck.channels, a, num_classes, bn) for _ in self.strides)
        self.anchors = Anchors(anchors_wh, learn=cfg.anchors.learn)
        if self.anchors.num != a * len(self.strides):
            raise ValueError(
                f"{self.anchors.num} anchors for {len(self.strides)} level(s) of anchors.num={a}"
            )

    def forward(self, images: Tensor) -> tuple[Tensor | tuple[Tensor, ...], Tensor]:
        """images float [B, 3, S, S] in [0, 1] -> (predictions, [L * A, 2] log px).

        Predictions: [B, A, S/stride, S/stride, 5 + C], or with levels a tuple of those, one a level.
        """
        if self.neck is None:
            return self.head(self.backbone(images)), self.anchors.log_wh.clone()
        maps = self.neck(self.backbone.features(images))
        return tuple(head(m) for head, m in zip(self.heads, maps, strict=True)), self.anchors.log_wh.clone()
