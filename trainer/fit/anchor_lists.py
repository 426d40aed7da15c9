"""Anchor lists as people paste them into `anchor-opt fit` (`--compare`, `--init`).

The formats: darknet `10,13, 16,30`, YAML `[[10, 13], [16, 30]]`, YOLOv5 `[10,13, 16,30]`, optionally
named (`yolov2=10,13, 16,30`); or a JSON file written by an earlier `--out` (its result set); or the
name of an init (kmeans, uniform, identical) or `autoanchor` (YOLOv5's, trainer.fit.autoanchor), computed
on the same boxes with as many anchors as the fit.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from trainer.fit.autoanchor import autoanchor
from trainer.fit.solver import INITS, starting_anchors, usable_boxes

COMPARE_NAMES = (*INITS, "autoanchor")  # anchor sets --compare computes by name

_NAMED = re.compile(r"^\s*([A-Za-z][\w .+-]*?)\s*=(.*)$", re.S)
_EXAMPLE = "w,h pairs in pixels such as '10,13, 16,30' or '[[10,13],[16,30]]'"


def parse_anchor_list(text: str, what: str = "--compare") -> list[tuple[float, float]]:
    """(w, h) pairs from darknet, YAML or YOLOv5 text; ValueError naming `what` when it is not one."""
    tokens = [t for t in re.split(r"[\s,\[\]()]+", text) if t]
    values = []
    for t in tokens:
        try:
            values.append(float(t))
        except ValueError:
            raise ValueError(f"{what} {text!r}: {t!r} is not a number; expected {_EXAMPLE}") from None
    if not values or len(values) % 2:
        raise ValueError(f"{what} {text!r}: {len(values)} numbers, expected {_EXAMPLE}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{what} {text!r}: widths and heights must be positive pixels")
    return list(zip(values[0::2], values[1::2], strict=True))


def parse_compare(spec: str) -> tuple[str | None, str | list[tuple[float, float]]]:
    """`[NAME=]LIST`, `[NAME=]FILE.json` or `[NAME=]INIT` -> (name or None, pairs or a name to resolve).

    Files are read here, so a bad --compare fails before any dataset is opened.
    """
    match = _NAMED.match(spec)
    name, value = (match.group(1), match.group(2).strip()) if match else (None, spec.strip())
    if value in COMPARE_NAMES:
        return name or value, value
    path = Path(value)
    if value.lower().endswith(".json"):
        if not path.is_file():
            raise ValueError(f"--compare {spec!r}: file not found: {path}")
        try:
            saved = json.loads(path.read_text())
            pairs = saved["sets"][saved["result"]]["anchors"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(
                f"--compare {spec!r}: not a report written by `anchor-opt fit --out` ({exc})"
            ) from None
        return name or path.stem, [tuple(map(float, p)) for p in pairs]
    return name, parse_anchor_list(value, "--compare")


def resolve_compare(specs: list[tuple[str | None, object]], boxes_wh, num: int, seed: int) -> dict:
    """{unique name: [K, 2] anchors}: names (COMPARE_NAMES) computed with `num` anchors on the boxes a
    fit uses."""
    out: dict[str, Tensor] = {}
    unnamed = sum(name is None for name, _ in specs)
    for k, (name, value) in enumerate(specs, start=1):
        if value == "autoanchor":
            wh = autoanchor(usable_boxes(boxes_wh)[0], num, seed)
        elif isinstance(value, str):
            wh = starting_anchors(value, num, usable_boxes(boxes_wh)[0], seed)
        else:
            wh = torch.tensor(value)
        out[unique_name(name or ("compare" if unnamed == 1 else f"compare {k}"), out)] = wh.float()
    return out


def unique_name(name: str, taken: Mapping[str, object]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    return candidate
