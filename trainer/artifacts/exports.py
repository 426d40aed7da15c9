"""A run's final anchors and weights in the forms other tools read.

Anchors are (w, h) in pixels at the model's input size (after the letterbox resize); darknet's
YOLOv2 [region] layer wants them in grid cells (pixels / stride) instead. Pixel exports are rounded
to whole pixels, never below 1, since darknet, YOLOv5 and mmdetection all treat them as sizes.

    artifacts/anchors.json   the anchors (px and cells), the fit metrics and every export string
    artifacts/anchors.yaml   the anchors plus the YOLOv5 and mmdetection forms, in one YAML document
    artifacts/anchors.cfg    the two darknet `anchors = ` lines, each under a comment naming its section
    artifacts/weights.pt     network, anchors, config and class names, to rebuild the Detector
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import torch
import yaml
from torch import Tensor

from trainer.config import TrainConfig
from trainer.contract.layout import ANCHORS_CFG_KEY, ANCHORS_JSON_KEY, ANCHORS_YAML_KEY
from trainer.model.detector import Detector

if TYPE_CHECKING:
    from trainer.contract.writer import RunWriter


WEIGHTS_FORMAT = "anchor-opt-weights"
WEIGHTS_VERSION = 1


def _checked(anchors_px: Tensor) -> list[list[float]]:
    """[K, 2] anchors as float pairs; ValueError unless every one is a finite positive size."""
    wh = torch.as_tensor(anchors_px).detach().double().cpu()
    if wh.ndim != 2 or wh.shape[1] != 2 or len(wh) == 0:
        raise ValueError(f"anchors must be (w, h) pairs of shape [K, 2], got {tuple(wh.shape)}")
    if not bool((torch.isfinite(wh) & (wh > 0)).all()):
        raise ValueError(f"anchors must be finite positive pixels, got {wh.tolist()}")
    return wh.tolist()


def _whole(px: float) -> int:
    return max(1, round(px))  # an anchor under half a pixel would otherwise become a 0 size


def anchor_exports(anchors_px: Tensor, stride: int) -> dict[str, str]:
    """The anchors as darknet cfg lines, a YOLOv5 yaml entry and an mmdetection anchor generator.

    YOLOv5 and mmdetection get one output level holding every anchor, as this detector has one.
    """
    wh = _checked(anchors_px)
    cells = ", ".join(f"{w / stride:.4f},{h / stride:.4f}" for w, h in wh)
    pixels = ", ".join(f"{_whole(w)},{_whole(h)}" for w, h in wh)
    pairs = ", ".join(f"[{_whole(w)}, {_whole(h)}]" for w, h in wh)
    return {
        "darknet_region": f"anchors = {cells}",  # YOLOv2 [region]: grid cells
        "darknet_yolo": f"anchors = {pixels}",  # YOLOv3/v4 [yolo]: input pixels
        "yolov5": f"anchors:\n  - [{pixels}]",  # one output level with every anchor
        "mmdet": (  # the bbox head's anchor_generator: one level, base_sizes in input pixels
            "anchor_generator:\n"
            "  type: YOLOAnchorGenerator\n"
            f"  strides: [{stride}]\n"
            "  base_sizes:\n"
            f"    - [{pairs}]"
        ),
    }


def _rounded(wh: list[list[float]], nd: int) -> list[list[float]]:
    return [[round(w, nd), round(h, nd)] for w, h in wh]


def _indented(text: str, by: str = "  ") -> str:
    return "".join(by + line + "\n" for line in text.splitlines())


def write_anchor_artifacts(
    writer: RunWriter, anchors_px: Tensor, stride: int, image_size: int, fit: dict | None = None
) -> dict[str, str]:
    """Writes anchors.json, anchors.yaml and anchors.cfg under artifacts/; returns {name: key}.

    `fit` (the anchor fit metrics, or None) goes into the JSON as it is.
    """
    wh = _checked(anchors_px)
    ex = anchor_exports(anchors_px, stride)
    px = _rounded(wh, 3)
    writer.write_json(
        ANCHORS_JSON_KEY,
        {
            "image_size": image_size,
            "stride": stride,
            "anchors": px,
            "anchors_cells": _rounded([[w / stride, h / stride] for w, h in wh], 4),
            "fit": fit,
            "exports": ex,
        },
    )
    # The plain keys go through yaml.safe_dump (every float written in a form safe_load reads back as
    # a float); the tool forms are the export strings themselves, so both files always agree.
    plain = yaml.safe_dump(
        {"image_size": image_size, "stride": stride, "anchors": px}, default_flow_style=None, sort_keys=False
    )
    writer.write_bytes(
        ANCHORS_YAML_KEY,
        (
            f"# anchor-opt anchors: (w, h) in pixels at a {image_size} px input, stride {stride}.\n"
            "# yolov5.anchors goes into a YOLOv5 model yaml; mmdet.anchor_generator into an\n"
            "# mmdetection YOLOv3 bbox_head. Both are whole pixels, one level holding every anchor.\n"
            + plain
            + "yolov5:\n"
            + _indented(ex["yolov5"])
            + "mmdet:\n"
            + _indented(ex["mmdet"])
        ).encode(),
    )
    num = len(wh)
    writer.write_bytes(
        ANCHORS_CFG_KEY,
        (
            f"# [region] (YOLOv2, num={num}): grid cells of {stride} px at a {image_size} px input\n"
            f"{ex['darknet_region']}\n"
            f"# [yolo] (YOLOv3/v4, num={num}): pixels at a {image_size} px input\n"
            f"{ex['darknet_yolo']}\n"
        ).encode(),
    )
    return {
        "anchors_json": ANCHORS_JSON_KEY,
        "anchors_yaml": ANCHORS_YAML_KEY,
        "anchors_cfg": ANCHORS_CFG_KEY,
    }


def weights_bytes(model: Detector, cfg: TrainConfig, class_names: list[str]) -> bytes:
    """The trained model as one object to store: state dict (on CPU, so it loads without a GPU),
    anchors in pixels (readable without rebuilding the model), the config and the class names."""
    payload = {
        "format": WEIGHTS_FORMAT,
        "version": WEIGHTS_VERSION,
        "config": cfg.model_dump(mode="json"),
        "class_names": list(class_names),
        "num_classes": model.num_classes,
        "anchors_px": model.anchors.wh().detach().cpu(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def load_weights(data: bytes, where: str = "weights") -> tuple[Detector, TrainConfig, list[str]]:
    """Rebuilds the Detector from `weights_bytes` output, in eval mode, on CPU.

    Loads with `weights_only=True`: a weights file may come from elsewhere, and this one holds only
    tensors and plain values. ValueError naming `where` (a path or URI) when it is not such a file.
    """
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, truncated, or holding objects beyond plain data
        raise ValueError(f"{where}: not an anchor-opt weights file ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"{where}: not an anchor-opt weights file (format is not {WEIGHTS_FORMAT!r})")
    if payload.get("version") != WEIGHTS_VERSION:
        raise ValueError(f"{where}: weights version {payload.get('version')!r} is not {WEIGHTS_VERSION}")
    try:
        cfg = TrainConfig.model_validate(payload["config"])
        model = Detector(cfg, payload["anchors_px"], int(payload["num_classes"]))
        model.load_state_dict(payload["model"])
        class_names = [str(name) for name in payload["class_names"]]
    except Exception as exc:  # a config this version rejects, or a state dict that does not fit it
        raise ValueError(f"{where}: cannot rebuild the model ({type(exc).__name__}: {exc})") from None
    return model.eval(), cfg, class_names
