"""Darknet's binary `.weights` files for this project's darknet19 detector: read (and written, for tests).

The format (darknet's parser.c, load_weights_upto / save_weights_upto): int32 major, minor and
revision, then `seen` (images trained on) as int64 when major * 10 + minor >= 2 (and both are under
1000), else int32; then, for each convolutional layer in cfg order, float32 little-endian:
with batch norm its biases (BN beta), scales (BN gamma), rolling mean and rolling variance; without,
its biases; then the weights [out, in, k, k]. Nothing says where one layer ends: the reader needs the
network's layers, and a file is any prefix of them (`darknet partial` writes the first N).

The layers, in darknet's yolo-voc.cfg order, and the modules they load into (`darknet_layers`):

    0-17   backbone.stage1 (13 convs), backbone.stage2 (first 5)   = darknet19_448.conv.23
    18-19  backbone.stage2 (the two 3x3x1024 convs)
    20     backbone.passthrough (1x1x64, after `[route] layers=-9`)
    21     backbone.fuse (3x3x1024, after `[reorg]` and `[route] layers=-1,-4`: passthrough first)
    22     head.pred (1x1, A * (5 + C) outputs, no batch norm, linear)

darknet's [region] layer reads channel n * (5 + C) + e as anchor n's entry e, with e = x, y, w, h,
objectness, classes: the layout of YoloHead, so the head loads as it is, anchor n of the file being
this model's anchor n. A head whose size differs from the model's (other classes or anchors) is
skipped and said so; the rest still loads. The head's ShiftFreeBatchNorm (tricks.bn_no_shift) has
no darknet counterpart: it keeps its identity init, which leaves the predictions as darknet's only in
eval mode (in training it normalises tw, th over the batch, as that trick means to).

PyTorch's batch norm divides by sqrt(var + 1e-5), darknet's by sqrt(var) + 1e-6: the stored
statistics are loaded unchanged (the file reads back exactly), so outputs agree with darknet's to
float tolerance for channels whose variance is well above 1e-5.

A file that does not end on a layer boundary, holds more than the model, or is read into a model
without a darknet layout (the tiny backbone) is refused with a DarknetFormatError naming it, before
any tensor of the model changes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import torch
from torch import nn

HEADER = struct.Struct("<iii")
BACKBONE_LAYERS = 18  # darknet19_448.conv.23: the first 23 cfg layers, 18 of them convolutional


class DarknetFormatError(ValueError):
    """A darknet weights file that does not fit the model; the message names the file."""


@dataclass(frozen=True)
class DarknetLayer:
    index: int  # among the file's conv layers, 0-based
    name: str  # the module's name in the model ("backbone.stage1.0")
    conv: nn.Conv2d
    bn: nn.BatchNorm2d | None

    @property
    def tensors(self) -> list[tuple[str, torch.Tensor]]:
        """(state-dict key, tensor) in file order."""
        conv = f"{self.name}.0" if self.bn is not None else self.name
        if self.bn is None:
            return [(f"{conv}.bias", self.conv.bias), (f"{conv}.weight", self.conv.weight)]
        bn = f"{self.name}.1"
        return [
            (f"{bn}.bias", self.bn.bias),
            (f"{bn}.weight", self.bn.weight),
            (f"{bn}.running_mean", self.bn.running_mean),
            (f"{bn}.running_var", self.bn.running_var),
            (f"{conv}.weight", self.conv.weight),
        ]

    @property
    def floats(self) -> int:
        return sum(t.numel() for _, t in self.tensors)


@dataclass
class DarknetRead:
    """What `read_darknet_weights` loaded: the header, the layers, and the head when it was skipped."""

    version: tuple[int, int, int]
    seen: int
    loaded: list[DarknetLayer]
    total: int  # conv layers the model has in darknet's layout
    head_skipped: str | None = None  # why, when the file's head did not fit

    @property
    def keys(self) -> list[str]:
        return [key for layer in self.loaded for key, _ in layer.tensors]


def _conv_bn(name: str, block: nn.Module) -> tuple[str, nn.Conv2d, nn.BatchNorm2d]:
    return name, block[0], block[1]


def darknet_layers(model: nn.Module, where: str = "model") -> list[DarknetLayer]:
    """A Detector's (or a bare Darknet19's) conv layers in yolo-voc.cfg order; DarknetFormatError
    for a model with no darknet layout (the tiny backbone)."""
    from trainer.model.detector import Darknet19

    backbone = getattr(model, "backbone", model)
    if not isinstance(backbone, Darknet19):
        raise DarknetFormatError(
            f"{where}: darknet weights fit only model.backbone: darknet19 (this model's backbone is "
            f"{type(backbone).__name__}, which has no darknet layout)"
        )
    prefix = "backbone." if backbone is not model else ""
    found = []
    for stage in ("stage1", "stage2"):
        for i, block in enumerate(getattr(backbone, stage)):
            if isinstance(block, nn.Sequential):
                found.append(_conv_bn(f"{prefix}{stage}.{i}", block))
    found.append(_conv_bn(f"{prefix}passthrough", backbone.passthrough))
    found.append(_conv_bn(f"{prefix}fuse", backbone.fuse))
    layers = [DarknetLayer(i, name, conv, bn) for i, (name, conv, bn) in enumerate(found)]
    if backbone is not model:
        layers.append(DarknetLayer(len(layers), "head.pred", model.head.pred, None))
    return layers


def _read_header(f: BinaryIO, size: int, where: str) -> tuple[tuple[int, int, int], int, int]:
    """(version, seen, header bytes)."""
    head = f.read(HEADER.size)
    if len(head) < HEADER.size:
        raise DarknetFormatError(f"{where}: {size} bytes is too short for a darknet weights header")
    major, minor, revision = HEADER.unpack(head)
    if not all(0 <= n < 100_000 for n in (major, minor, revision)):  # darknet's are 0.1.0, 0.2.0, ...
        raise DarknetFormatError(
            f"{where}: neither a torch file nor darknet weights (a darknet header starts with "
            f"small version numbers, this one with {major}, {minor}, {revision})"
        )
    wide = major * 10 + minor >= 2 and 0 <= major < 1000 and 0 <= minor < 1000
    seen_format = "<q" if wide else "<i"
    raw = f.read(struct.calcsize(seen_format))
    if len(raw) < struct.calcsize(seen_format):
        raise DarknetFormatError(f"{where}: {size} bytes is too short for a darknet weights header")
    return (major, minor, revision), struct.unpack(seen_format, raw)[0], HEADER.size + len(raw)


def _plan(layers: list[DarknetLayer], payload: int, where: str) -> tuple[int, str | None]:
    """How many layers `payload` bytes hold, and why the head is skipped (its bytes ignored) if so."""
    sizes = np.cumsum([0] + [layer.floats * 4 for layer in layers])
    if payload == 0:
        raise DarknetFormatError(f"{where}: a darknet header and no layer: nothing to load")
    if payload in sizes:
        return int(np.searchsorted(sizes, payload)), None
    head = layers[-1]
    if head.name == "head.pred":  # a head for other classes or anchors: 1x1 conv, bias + weights
        rest = payload - int(sizes[-2])
        per_output = (head.conv.in_channels + 1) * 4
        if rest > 0 and rest % per_output == 0:
            n = rest // per_output
            shape = f" (5 anchors x {n // 5 - 5} classes)" if n % 5 == 0 and n // 5 > 5 else ""
            return len(layers) - 1, (
                f"the file's head has {n} outputs{shape}, this model's {head.conv.out_channels} "
                f"(anchors.num x (5 + classes)): classes or anchors differ"
            )
    if payload > sizes[-1]:
        raise DarknetFormatError(
            f"{where}: {payload - int(sizes[-1])} bytes left over after all {len(layers)} conv layers of "
            "this model's darknet layout: weights for another architecture"
        )
    done = int(np.searchsorted(sizes, payload, side="right")) - 1
    layer = layers[done]
    raise DarknetFormatError(
        f"{where}: ends {payload - int(sizes[done])} bytes into conv layer {done} ({layer.name}, "
        f"{layer.floats * 4} bytes): truncated, or weights for another architecture"
    )


def read_darknet_weights(f: BinaryIO, size: int, model: nn.Module, where: str) -> DarknetRead:
    """Loads the darknet weights in `f` (`size` bytes, named `where` in errors) into `model`, in place.

    Loads as many layers as the file holds (a prefix of `darknet_layers(model)`); the model is left
    untouched when the file is refused (DarknetFormatError)."""
    layers = darknet_layers(model, where)
    version, seen, header = _read_header(f, size, where)
    if version[0] > 1000 or version[1] > 1000:
        raise DarknetFormatError(f"{where}: darknet version {version}: transposed weights (unsupported)")
    count, head_skipped = _plan(layers, size - header, where)
    with torch.no_grad():
        for layer in layers[:count]:
            for key, tensor in layer.tensors:
                data = f.read(tensor.numel() * 4)
                if len(data) != tensor.numel() * 4:
                    raise DarknetFormatError(f"{where}: ended while reading {key} (changed meanwhile?)")
                values = np.frombuffer(data, dtype="<f4").reshape(tuple(tensor.shape))
                tensor.copy_(torch.from_numpy(values.astype(np.float32)))
    return DarknetRead(version, seen, layers[:count], len(layers), head_skipped)


def write_darknet_weights(
    model: nn.Module,
    f: BinaryIO,
    upto: int | None = None,
    version: tuple[int, int, int] = (0, 2, 0),
    seen: int = 0,
) -> None:
    """Writes the model's first `upto` conv layers (all when None) in darknet's format, as
    `darknet partial` would: for tests, and to hand a trained backbone to darknet."""
    major, minor, _ = version
    f.write(HEADER.pack(*version))
    f.write(struct.pack("<q" if major * 10 + minor >= 2 else "<i", seen))
    for layer in darknet_layers(model)[:upto]:
        for _, tensor in layer.tensors:
            f.write(tensor.detach().cpu().float().numpy().astype("<f4").tobytes())
