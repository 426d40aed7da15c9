"""What `anchor-opt fit` reports: anchor sets, how well each fits the boxes, and exports.

A report is one JSON-ready dict (what `--out` writes) built from a dataset's box shapes and a
`FitResult`; the console tables and the picture are drawn from it. Every size is (w, h) in pixels at
the model's input size after the letterbox resize, unless a key ends in `_cells` (pixels / stride).

Anchor lists given on the command line (`--compare`, `--init`) are read in the formats people copy
them in: darknet `10,13, 16,30`, YAML `[[10, 13], [16, 30]]`, YOLOv5 `[10,13, 16,30]`, optionally
named (`yolov2=10,13, 16,30`); or a JSON file written by an earlier `--out` (its result set); or the
name of an init (kmeans, uniform, identical) computed on the same boxes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor

from trainer.artifacts.exports import anchor_exports
from trainer.artifacts.terminal import anchor_table, wh
from trainer.fit.solver import INITS, FitResult, starting_anchors, usable_boxes
from trainer.model.anchors import FIT_METRICS, anchor_fit
from trainer.model.boxes import shape_iou

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
    if value in INITS:
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
    """{unique name: [K, 2] anchors}: init names computed with `num` anchors on the usable boxes."""
    out: dict[str, Tensor] = {}
    unnamed = sum(name is None for name, _ in specs)
    for k, (name, value) in enumerate(specs, start=1):
        if isinstance(value, str):
            wh = starting_anchors(value, num, usable_boxes(boxes_wh)[0], seed)
        else:
            wh = torch.tensor(value)
        out[_unique(name or ("compare" if unnamed == 1 else f"compare {k}"), out)] = wh.float()
    return out


def _unique(name: str, taken: Mapping[str, object]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    return candidate


def _pairs(wh: Tensor, nd: int = 2) -> list[list[float]]:
    return [[round(float(w), nd), round(float(h), nd)] for w, h in wh.tolist()]


def describe_set(anchors: Tensor, boxes: Tensor, stride: int) -> dict:
    """Anchors [K, 2] px with their cells, fit metrics on `boxes` and the boxes each one serves best."""
    anchors = anchors.float()
    best = shape_iou(boxes.double(), anchors.double()).argmax(1)
    return {
        "anchors": _pairs(anchors),
        "anchors_cells": _pairs(anchors / stride, 4),
        "metrics": {k: round(v, 4) for k, v in anchor_fit(anchors, boxes).items()},
        "boxes_per_anchor": torch.bincount(best, minlength=len(anchors)).tolist(),
    }


def build_report(
    summary: dict,
    boxes_wh,
    result: FitResult,
    compare: Mapping[str, Tensor],
    *,
    image_size: int,
    stride: int,
    sources: list[str] | None = None,
) -> dict:
    """The whole report as a JSON-ready dict. `boxes_wh` [N, 2] are all boxes at the input size;
    metrics are computed on those the fit used (at least `min_px` in w and h)."""
    all_boxes = torch.as_tensor(boxes_wh, dtype=torch.float32).reshape(-1, 2)
    min_px = result.settings.get("min_px", 2.0)
    boxes = all_boxes[(all_boxes >= min_px).all(1) & torch.isfinite(all_boxes).all(1)]
    sets, init_name = {}, None
    if result.init is not None:
        init_name = f"init ({result.settings['init']})"
        sets[init_name] = describe_set(result.init, boxes, stride)
    sets[result.method] = describe_set(result.anchors, boxes, stride)
    for name, pairs in compare.items():
        sets[_unique(name, sets)] = describe_set(pairs, boxes, stride)
    size = None
    if len(boxes):
        q = torch.quantile(boxes, torch.tensor([0.0, 0.5, 1.0]), dim=0)
        size = {"min": _pairs(q[0:1])[0], "median": _pairs(q[1:2])[0], "max": _pairs(q[2:3])[0]}
    return {
        "dataset": summary,
        "sources": sources or [],
        "settings": {
            "anchors": len(result.anchors),
            "image_size": image_size,
            "stride": stride,
            "method": result.method,
            **result.settings,
        },
        "boxes": {
            "total": len(all_boxes),
            "used": result.boxes_used,
            "left_out": result.boxes_left_out,
            "min_px": min_px,
            "size_at_input_px": size,  # (w, h) of the used boxes: smallest, median, largest
        },
        "fit": {
            "steps": result.steps,
            "soft_steps": result.soft_steps,
            "hard_steps": result.hard_steps,
            "converged": result.converged,
            "seconds": round(result.seconds, 4),
            "path": None if result.path is None else [_pairs(step) for step in result.path],  # [T][A][2] px
        },
        "result": result.method,  # the name of the fitted set in `sets`
        "init": init_name,  # the name of the set the fit started from, None for kmeans
        "sets": sets,
        "metric_meanings": dict(FIT_METRICS),
        "exports": anchor_exports(result.anchors, stride),
    }


def summary_rows(report: dict) -> dict[str, str]:
    """Rows the fit adds to the dataset summary: the boxes it used, at the input size."""
    b, s = report["boxes"], report["settings"]
    left_out = f"left out: {b['left_out']} under {b['min_px']:g} px at {s['image_size']} px"
    rows = {"boxes fitted": f"{b['used']} ({left_out})"}
    if b["size_at_input_px"]:
        z = b["size_at_input_px"]
        rows[f"box size at {s['image_size']} px"] = (
            f"w {z['min'][0]:g}-{z['max'][0]:g}, h {z['min'][1]:g}-{z['max'][1]:g}, "
            f"median {z['median'][0]:g} x {z['median'][1]:g}"
        )
    return rows


def print_report(console: Console, report: dict) -> None:
    """The anchors of every set, the metrics table, how the fit went and the export lines."""
    sets, s, result = report["sets"], report["settings"], report["result"]
    mine = sets[result]
    columns = {name: wh(v["anchors"], ".3g") for name, v in sets.items()}
    columns[f"boxes ({result})"] = [str(n) for n in mine["boxes_per_anchor"]]
    table = anchor_table(
        f"anchors (w x h, pixels at the {s['image_size']} px input), by area", columns, result
    )
    console.print(table)

    metrics = Table(title=f"how well each set fits the {report['boxes']['used']} boxes")
    metrics.add_column("metric")
    for name in sets:
        metrics.add_column(name, justify="right", style="bold" if name == result else None)
    for key in FIT_METRICS:
        metrics.add_row(key, *(f"{v['metrics'][key]:.3f}" for v in sets.values()))
    console.print(metrics)
    meanings = Table.grid(padding=(0, 2))
    for key, meaning in FIT_METRICS.items():
        meanings.add_row(key, meaning)
    console.print(meanings)

    f = report["fit"]
    if result == "learned":
        settled = "settled" if f["converged"] else "NOT settled: raise the step cap"
        soft = f"{f['soft_steps']} soft at T={s['temperature']:g}, dist {s['dist']}"
        console.print(
            f"\nlearned: {f['steps']} steps ({soft}; {f['hard_steps']} hard, {settled}) "
            f"from the {s['init']} init in {f['seconds']:.2f} s",
            soft_wrap=True,
        )
    else:
        console.print(f"\nkmeans: YOLOv2's IoU k-means in {f['seconds']:.2f} s")
    ex = report["exports"]  # each value on a line of its own, unwrapped, to copy into a config
    for label, key in (
        (f"darknet [region] (YOLOv2, grid cells of {s['stride']} px):", "darknet_region"),
        ("darknet [yolo] (YOLOv3/v4, pixels):", "darknet_yolo"),
        ("YOLOv5 yaml (pixels):", "yolov5"),
    ):
        console.print(label, markup=False)
        console.print(ex[key], markup=False, soft_wrap=True, highlight=False)


def draw(report: dict, boxes_wh, result: FitResult, name: str | None = None) -> bytes:
    """The Figure-2 style picture: box density in log w-h, the fit's path, every other set as markers.

    `name` labels the dataset in the title (default: the dataset's own name, shortened).
    """
    from trainer.artifacts.plots import plot_anchors  # matplotlib only when a picture is drawn

    sets, result_name, s = report["sets"], report["result"], report["settings"]
    start = report["init"] or "init"
    drawn_as_path = (result_name, report["init"]) if result.path is not None else (result_name,)
    others = {k: v["anchors"] for k, v in sets.items() if k not in drawn_as_path}
    boxes = torch.as_tensor(boxes_wh, dtype=torch.float32).reshape(-1, 2)
    used = boxes[(boxes >= report["boxes"]["min_px"]).all(1) & torch.isfinite(boxes).all(1)]
    label = name or re.sub(r" \(\w+\)", "", report["dataset"].get("name") or "boxes")
    label = label if len(label) <= 60 else label[:57] + "..."
    scores = ", ".join(f"{k} {v['metrics']['mean_best_iou']:.3f}" for k, v in sets.items())
    steps = f", {result.steps} steps" if result.steps else ""
    title = f"{label}: {s['anchors']} anchors at {s['image_size']} px, {result_name}"
    return plot_anchors(
        used.numpy(),
        (result.path if result.path is not None else result.anchors[None]).numpy(),
        image_size=s["image_size"],
        title=f"{title}\nmean best IoU: {scores}",
        marker_sets={k: torch.tensor(v).numpy() for k, v in others.items()},
        path_labels=(start, result_name),
        note=f"{len(used):,} boxes\n{s['anchors']} anchors{steps}",
    )
