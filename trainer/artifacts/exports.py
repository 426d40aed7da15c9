"""A run's final anchors and weights in the forms other tools read (docs/exports.md).

Anchors are (w, h) in pixels at the model's input size (after the letterbox resize); darknet's
YOLOv2 [region] layer wants them in grid cells (pixels / stride) instead. Pixel exports are rounded
to whole pixels, never below 1, since darknet, YOLOv5 and mmdetection all treat them as sizes.
A model with several levels has one [L * A, 2] set, level after level, finest first
(trainer.model.levels); each tool then gets its own level order, in the tool's exports.

    artifacts/anchors.json   the anchors (px and cells), the fit metrics and every export string
    artifacts/anchors.yaml   the anchors plus the YOLOv5 and mmdetection forms, in one YAML document
    artifacts/anchors.cfg    darknet: one level, the two `anchors = ` lines, each under a comment
                             naming its section; several, one [yolo] section a level
    artifacts/weights.pt     network, anchors, config and class names, to rebuild the Detector
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import yaml
from torch import Tensor

from trainer.artifacts.anchor_generator import anchor_generator_config, checked_strides, fit_anchor_generator
from trainer.config import TrainConfig
from trainer.contract.layout import ANCHORS_CFG_KEY, ANCHORS_JSON_KEY, ANCHORS_YAML_KEY
from trainer.model.detector import Detector
from trainer.model.levels import anchor_levels

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


def _pixels(wh: list[list[float]]) -> str:
    return ", ".join(f"{_whole(w)},{_whole(h)}" for w, h in wh)


def _tuples(wh: list[list[float]]) -> str:
    return ", ".join(f"({_whole(w)}, {_whole(h)})" for w, h in wh)


def _levels(strides, stride, n: int) -> list[int]:
    """The strides as a list, from `strides` or the older keyword `stride`; checks the anchors split."""
    if (strides is None) == (stride is None):
        raise ValueError("give the stride of each level as `strides` (or one level's as `stride`), not both")
    levels = checked_strides(strides if stride is None else stride)
    anchor_levels(n, len(levels))  # ValueError when the anchors do not split into equal levels
    return levels


def _level_name(stride: int) -> str:
    """YOLOv5's comment for a level: P3/8 for stride 8 (P = log2 stride), else the stride itself."""
    p = stride.bit_length() - 1
    return f"P{p}/{stride}" if stride == 1 << p else f"stride {stride}"


def _one_level(wh: list[list[float]], stride: int) -> dict[str, str]:
    cells = ", ".join(f"{w / stride:.4f},{h / stride:.4f}" for w, h in wh)
    pairs = ", ".join(f"[{_whole(w)}, {_whole(h)}]" for w, h in wh)
    return {
        "darknet_region": f"anchors = {cells}",  # YOLOv2 [region]: grid cells
        "darknet_yolo": f"anchors = {_pixels(wh)}",  # YOLOv3/v4 [yolo]: input pixels
        "yolov5": f"anchors:\n  - [{_pixels(wh)}]",  # one output level with every anchor
        "mmdet": (  # the bbox head's anchor_generator: one level, base_sizes in input pixels
            "anchor_generator:\n"
            "  type: YOLOAnchorGenerator\n"
            f"  strides: [{stride}]\n"
            "  base_sizes:\n"
            f"    - [{pairs}]"
        ),
    }


def _several_levels(wh: list[list[float]], strides: list[int], generator: dict) -> dict[str, str]:
    """Each tool's form for L levels. YOLOv5 lists them finest first (P3, P4, P5, as yolov5s.yaml),
    and so does mmyolo; darknet's yolov3.cfg has its [yolo] sections coarsest first, all anchors in
    each, `mask` picking the level's; mmdetection's yolov3 configs give base_sizes coarsest first
    with strides [32, 16, 8]."""
    per = len(wh) // len(strides)
    groups = [wh[i * per : (i + 1) * per] for i in range(len(strides))]
    coarse_first = list(reversed(range(len(strides))))
    sections = [
        f"[yolo]\n# stride {strides[i]}\nmask = {','.join(str(k) for k in range(i * per, (i + 1) * per))}\n"
        f"anchors = {_pixels(wh)}\nnum = {len(wh)}"
        for i in coarse_first
    ]
    pair_lists = [_tuples(groups[i]) for i in coarse_first]
    rows = [  # mmyolo's layout: a comma after every level but the last, then its P comment
        f"    [{_tuples(g)}]{',' * (i < len(groups) - 1)}  # {_level_name(s)}\n"
        for i, (g, s) in enumerate(zip(groups, strides, strict=True))
    ]
    return {
        "darknet_yolo": (
            "# One [yolo] section a level, coarsest first as in darknet's yolov3.cfg (yolov4.cfg lists the\n"
            "# finest first): match each to yours by stride. Keep your own classes= in each section, and\n"
            f"# filters = (classes + 5) * {per} in the [convolutional] just before it.\n"
            + "\n\n".join(sections)
        ),
        "yolov5": "anchors:\n"
        + "\n".join(f"  - [{_pixels(g)}]  # {_level_name(s)}" for g, s in zip(groups, strides, strict=True)),
        "mmdet": (
            "anchor_generator:\n"
            "  type: YOLOAnchorGenerator\n"
            f"  strides: [{', '.join(str(strides[i]) for i in coarse_first)}]\n"
            "  base_sizes:\n"
            + "\n".join(
                "    - [" + ", ".join(f"[{_whole(w)}, {_whole(h)}]" for w, h in groups[i]) + "]"
                for i in coarse_first
            )
        ),
        "mmdet_py": (
            "anchor_generator=dict(\n"
            "    type='YOLOAnchorGenerator',\n"
            "    base_sizes=[" + ",\n                ".join(f"[{p}]" for p in pair_lists) + "],\n"
            f"    strides={[strides[i] for i in coarse_first]!r})"
        ),
        # mmyolo's YOLOv5 configs: module-level `anchors` and `strides`, finest first
        "mmyolo": "anchors = [\n" + "".join(rows) + f"]\nstrides = {strides!r}",
        "mmdet_anchor_generator": anchor_generator_config(generator),
    }


def anchor_exports(
    anchors_px: Tensor,
    strides: int | Sequence[int] | None = None,
    boxes_wh: Tensor | None = None,
    *,
    stride: int | None = None,
) -> dict[str, str]:
    """The anchors as darknet cfg lines, a YOLOv5 yaml entry and mmdetection anchor generators.

    `strides`: one int (or a one-item list) for a one-level model: every anchor on that level, as
    before levels; or one stride per level, ascending, the anchors [L * A, 2] grouped by level finest
    first. Several levels add `mmdet_py`, `mmyolo` and `mmdet_anchor_generator` (the closest
    AnchorGenerator, fitted to `boxes_wh` when given, else to the anchors) and drop `darknet_region`
    (YOLOv2 had one level).
    """
    wh = _checked(anchors_px)
    levels = _levels(strides, stride, len(wh))
    if len(levels) == 1:
        return _one_level(wh, levels[0])
    return _several_levels(wh, levels, fit_anchor_generator(torch.tensor(wh), levels, boxes_wh))


_PYTHON_FORMS = ("mmdet_py", "mmyolo", "mmdet_anchor_generator")  # mmdetection .py config entries, not YAML


def _rounded(wh: list[list[float]], nd: int) -> list[list[float]]:
    return [[round(w, nd), round(h, nd)] for w, h in wh]


def _indented(text: str, by: str = "  ") -> str:
    return "".join(by + line + "\n" for line in text.splitlines())


def write_anchor_artifacts(
    writer: RunWriter,
    anchors_px: Tensor,
    strides: int | Sequence[int] | None = None,
    image_size: int | None = None,
    fit: dict | None = None,
    boxes_wh: Tensor | None = None,
    *,
    stride: int | None = None,
) -> dict[str, str]:
    """Writes anchors.json, anchors.yaml and anchors.cfg under artifacts/; returns {name: key}.

    `strides` as for `anchor_exports`. `fit` (the anchor fit metrics, or None) goes into the JSON as
    it is; with several levels the closest AnchorGenerator, fitted to `boxes_wh` (pixels at the input
    size) when given, goes beside it. One level keeps `stride`; several have `strides` and no
    `stride` (a reader wanting one int would misread a list). docs/exports.md describes every key.
    """
    wh = _checked(anchors_px)
    strides = _levels(strides, stride, len(wh))
    if image_size is None:
        raise ValueError("write_anchor_artifacts needs the image_size the anchors are in pixels at")
    levels = anchor_levels(len(wh), len(strides))
    px = _rounded(wh, 3)
    cells = _rounded([[w / strides[lv], h / strides[lv]] for (w, h), lv in zip(wh, levels, strict=True)], 4)
    names = ", ".join(str(s) for s in strides)
    if len(strides) == 1:
        ex = _one_level(wh, strides[0])
        plain = {"image_size": image_size, "stride": strides[0], "anchors": px}
        doc = {**plain, "anchors_cells": cells, "fit": fit, "exports": ex}
        header = (
            f"# anchor-opt anchors: (w, h) in pixels at a {image_size} px input, stride {names}.\n"
            "# yolov5.anchors goes into a YOLOv5 model yaml; mmdet.anchor_generator into an\n"
            "# mmdetection YOLOv3 bbox_head. Both are whole pixels, one level holding every anchor.\n"
        )
        cfg = (
            f"# [region] (YOLOv2, num={len(wh)}): grid cells of {names} px at a {image_size} px input\n"
            f"{ex['darknet_region']}\n"
            f"# [yolo] (YOLOv3/v4, num={len(wh)}): pixels at a {image_size} px input\n"
        )
    else:
        generator = fit_anchor_generator(torch.tensor(wh), strides, boxes_wh)
        ex = _several_levels(wh, strides, generator)
        plain = {"image_size": image_size, "strides": strides, "levels": levels, "anchors": px}
        per_level = [
            {
                "stride": s,
                "anchors": [a for a, lv in zip(px, levels, strict=True) if lv == i],
                "anchors_cells": [c for c, lv in zip(cells, levels, strict=True) if lv == i],
            }
            for i, s in enumerate(strides)
        ]
        doc = {**plain, "anchors_cells": cells, "per_level": per_level, "fit": fit}
        doc |= {"anchor_generator": generator, "exports": ex}
        header = (
            f"# anchor-opt anchors: (w, h) in pixels at a {image_size} px input, {len(strides)} levels at\n"
            f"# strides {names}, finest first; `levels` is each anchor's. yolov5.anchors goes into a\n"
            "# YOLOv5 model yaml (P3 first); mmdet.anchor_generator (YAML) or mmdet_py (Python) into an\n"
            "# mmdetection YOLOv3 bbox_head (coarsest first, as mmdetection's yolov3 configs); mmyolo\n"
            "# the `anchors` and `strides` of an mmyolo YOLOv5 config (finest first);\n"
            "# mmdet_anchor_generator is the closest AnchorGenerator (RetinaNet, Faster R-CNN FPN).\n"
        )
        cfg = (
            f"# [yolo] sections (YOLOv3/v4, num={len(wh)}): pixels at a {image_size} px input (the [net]\n"
            f"# width and height), levels at strides {names}\n"
        )
    writer.write_json(ANCHORS_JSON_KEY, doc)
    # The plain keys go through yaml.safe_dump (every float written in a form safe_load reads back as
    # a float); the tool forms are the export strings themselves, so both files always agree: the
    # YAML ones as mappings, the Python ones as literal block strings (`|-`, read back unchanged).
    tools = "".join(
        f"{name}:{' |-' if name in _PYTHON_FORMS else ''}\n" + _indented(ex[name])
        for name in ("yolov5", "mmdet", *_PYTHON_FORMS)
        if name in ex
    )
    plain_text = yaml.safe_dump(plain, default_flow_style=None, sort_keys=False)
    writer.write_bytes(ANCHORS_YAML_KEY, (header + plain_text + tools).encode())
    writer.write_bytes(ANCHORS_CFG_KEY, f"{cfg}{ex['darknet_yolo']}\n".encode())
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
