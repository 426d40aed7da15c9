"""What `anchor-opt fit` reports: anchor sets, how well each fits the boxes, and exports.

A report is one JSON-ready dict (what `--out` writes) built from a dataset's box shapes and a
`FitResult`; the console tables and the picture are drawn from it. Every size is (w, h) in pixels at
the model's input size after the letterbox resize, unless a key ends in `_cells` (pixels / the
stride of the anchor's level).

The fit uses the boxes with w or h at least 2 px (YOLOv5's rule); the metrics are on all boxes, as
YOLOv5 prints them, so a set is not credited for leaving the smallest boxes out. With several
levels each set's anchors are ranked by area and cut into levels (trainer.model.levels), and every
set has a `per_level` summary: its stride, its anchors, the boxes whose best anchor is on it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor

from trainer.artifacts.exports import anchor_exports
from trainer.artifacts.terminal import anchor_table, wh
from trainer.fit.anchor_lists import unique_name
from trainer.fit.shapes import Shapes
from trainer.fit.solver import BOX_RULE, FitResult, kept
from trainer.fit.strides import levels_of
from trainer.model.anchors import FIT_METRICS, anchor_fit

_PRINTED_EXPORTS = {  # key: label, one level then several
    1: (("darknet_region", "darknet [region] (YOLOv2, grid cells of {stride} px):"),
        ("darknet_yolo", "darknet [yolo] (YOLOv3/v4, pixels):"), ("yolov5", "YOLOv5 yaml (pixels):")),
    2: (("darknet_yolo", "darknet [yolo] sections (YOLOv3/v4, pixels):"),
        ("yolov5", "YOLOv5 yaml (pixels, one row a level, finest first):")),
}  # fmt: skip


def _pairs(wh: Tensor, nd: int = 2) -> list[list[float]]:
    return [[round(float(w), nd), round(float(h), nd)] for w, h in wh.tolist()]


def describe_set(anchors: Tensor, boxes: Tensor, strides: list[int]) -> dict:
    """Anchors [K, 2] px with their levels and cells, fit metrics on `boxes`, the boxes each serves
    best, and per level (when K splits into the levels) its stride, anchors, boxes and mean IoU."""
    anchors = anchors.float()
    value, best = Shapes.of(boxes).best(anchors.double())
    per_anchor = torch.bincount(best, minlength=len(anchors))
    levels = levels_of(anchors, len(strides)) if len(anchors) % len(strides) == 0 else None
    out = {
        "anchors": _pairs(anchors),
        "levels": levels,  # each anchor's level (0 the finest), None when K does not split into them
        "anchors_cells": None,
        "metrics": {k: round(v, 4) for k, v in anchor_fit(anchors, boxes).items()},
        "boxes_per_anchor": per_anchor.tolist(),
        "per_level": None,
    }
    if levels is not None:
        level_of = torch.tensor(levels, dtype=torch.long)
        stride = torch.tensor([strides[lv] for lv in levels], dtype=torch.float32)[:, None]
        out["anchors_cells"] = _pairs(anchors / stride, 4)
        box_level = level_of[best]
        out["per_level"] = [
            {
                "level": lv,
                "stride": s,
                "anchors": _pairs(anchors[level_of == lv]),
                "boxes": int((box_level == lv).sum()),  # boxes whose best anchor is on this level
                "mean_best_iou": _mean(value[box_level == lv]),  # theirs, None when there are none
            }
            for lv, s in enumerate(strides)
        ]
    return out


def _mean(values: Tensor) -> float | None:
    return round(float(values.mean()), 4) if len(values) else None


def build_report(
    summary: dict,
    boxes_wh,
    result: FitResult,
    compare: Mapping[str, Tensor],
    *,
    image_size: int,
    sources: list[str] | None = None,
) -> dict:
    """The whole report as a JSON-ready dict. `boxes_wh` [N, 2] are all boxes at the input size: the
    metrics are on all of them with a size (finite, positive), the fit used those `kept` keeps."""
    given = torch.as_tensor(boxes_wh, dtype=torch.float64).reshape(-1, 2)
    measurable = given[torch.isfinite(given).all(1) & (given > 0).all(1)]
    min_px = result.settings.get("min_px", 2.0)
    used = given[kept(given, min_px)].float()
    strides = result.strides
    sets, init_name = {}, None
    if result.init is not None:
        init_name = f"init ({result.settings['init']})"
        sets[init_name] = describe_set(result.init, measurable, strides)
    sets[result.method] = describe_set(result.anchors, measurable, strides)
    for name, pairs in compare.items():
        sets[unique_name(name, sets)] = describe_set(pairs, measurable, strides)
    size = None
    if len(used):
        q = torch.quantile(used, torch.tensor([0.0, 0.5, 1.0]), dim=0)
        size = {"min": _pairs(q[0:1])[0], "median": _pairs(q[1:2])[0], "max": _pairs(q[2:3])[0]}
    one = len(strides) == 1
    return {
        "dataset": summary,
        "sources": sources or [],
        "settings": {
            "anchors": len(result.anchors),
            "anchors_per_level": len(result.anchors) // len(strides),
            "levels": len(strides),
            "strides": strides,
            "stride": strides[0] if one else None,  # one level only; several have `strides`
            "image_size": image_size,
            "method": result.method,
            **result.settings,
        },
        "boxes": {
            "total": len(given),
            "used": result.boxes_used,  # fitted
            "left_out": result.boxes_left_out,
            "min_px": min_px,
            "rule": "fitted when " + BOX_RULE.format(px=min_px) + " (YOLOv5's rule)",
            "metrics_on": len(measurable),  # every set's metrics: all boxes with a size, fitted or not
            "size_at_input_px": size,  # (w, h) of the fitted boxes: smallest, median, largest
        },
        "fit": {
            "objective": result.objective,
            "steps": result.steps,
            "soft_steps": result.soft_steps,
            "hard_steps": result.hard_steps,
            "refine_steps": result.refine_steps,
            "refine": result.refine,  # the IoU phase on the fitted boxes, None without one
            "converged": result.converged,
            "seconds": round(result.seconds, 4),
            "path": None if result.path is None else [_pairs(step) for step in result.path],  # [T][K][2] px
        },
        "result": result.method,  # the name of the fitted set in `sets`
        "init": init_name,  # the name of the set the fit started from, None for kmeans and autoanchor
        "sets": sets,
        "metric_meanings": dict(FIT_METRICS),
        "exports": anchor_exports(result.anchors, strides[0] if one else strides, None if one else used),
    }


def summary_rows(report: dict) -> dict[str, str]:
    """Rows the fit adds to the dataset summary: the boxes it used, at the input size."""
    b, s = report["boxes"], report["settings"]
    left_out = f"{b['left_out']} left out: under {b['min_px']:g} px in both w and h at {s['image_size']} px"
    rows = {"boxes fitted": f"{b['used']} of {b['total']} ({left_out}); metrics on all {b['metrics_on']}"}
    if b["size_at_input_px"]:
        z = b["size_at_input_px"]
        rows[f"box size at {s['image_size']} px"] = (
            f"w {z['min'][0]:g}-{z['max'][0]:g}, h {z['min'][1]:g}-{z['max'][1]:g}, "
            f"median {z['median'][0]:g} x {z['median'][1]:g} (fitted boxes)"
        )
    return rows


def print_report(console: Console, report: dict) -> None:
    """The anchors of every set, the metrics table, per level, how the fit went and the export lines."""
    sets, s, result, b = report["sets"], report["settings"], report["result"], report["boxes"]
    mine = sets[result]
    columns = {name: wh(v["anchors"], ".3g") for name, v in sets.items()}
    if s["levels"] > 1:
        columns = {"level (stride)": [f"{lv} ({s['strides'][lv]})" for lv in mine["levels"]], **columns}
    columns[f"boxes ({result})"] = [str(n) for n in mine["boxes_per_anchor"]]
    table = anchor_table(
        f"anchors (w x h, pixels at the {s['image_size']} px input), by area", columns, result
    )
    console.print(table)

    fitted = f"{b['used']} fitted, {b['left_out']} left out"
    metrics = Table(title=f"how well each set fits all {b['metrics_on']} boxes ({fitted})")
    metrics.add_column("metric")
    for name in sets:
        metrics.add_column(name, justify="right", style="bold" if name == result else None)
    for key in FIT_METRICS:
        metrics.add_row(key, *(f"{v['metrics'][key]:.3f}" for v in sets.values()))
    console.print(metrics)
    meanings = Table.grid(padding=(0, 2))
    for key, meaning in FIT_METRICS.items():
        meanings.add_row(key, meaning)
    meanings.add_row("fitted boxes", b["rule"])
    console.print(meanings)
    if s["levels"] > 1:
        _print_levels(console, mine["per_level"], result)
    console.print("\n" + _how(report), soft_wrap=True)
    ex = report["exports"]  # each value on a line of its own, unwrapped, to copy into a config
    for key, label in _PRINTED_EXPORTS[min(s["levels"], 2)]:
        console.print(label.format(stride=s["stride"]), markup=False)
        console.print(ex[key], markup=False, soft_wrap=True, highlight=False)


def _print_levels(console: Console, per_level: list[dict], result: str) -> None:
    table = Table(title=f"{result} anchors per level (boxes: those whose best anchor is on the level)")
    for heading in ("level", "stride", "anchors (w x h)", "boxes", "mean best IoU"):
        table.add_column(heading, justify="right")
    for lv in per_level:
        iou = "-" if lv["mean_best_iou"] is None else f"{lv['mean_best_iou']:.3f}"
        anchors = ", ".join(wh(lv["anchors"], ".3g"))
        table.add_row(str(lv["level"]), str(lv["stride"]), anchors, str(lv["boxes"]), iou)
    console.print(table)


def _how(report: dict) -> str:
    """One line: how the result was fitted, and in what time."""
    f, s, result = report["fit"], report["settings"], report["result"]
    fraction = s.get("min_stride_fraction")
    floor = f", each level's anchors >= {fraction:g} x its stride" if fraction else ""
    if result == "kmeans":
        return f"kmeans: YOLOv2's IoU k-means, {s['centroid']} centroids{floor}, in {f['seconds']:.2f} s"
    if result == "autoanchor":
        return (
            "autoanchor: YOLOv5's autoanchor re-implemented (whitened k-means, then a 1000-generation "
            f"genetic search on its fitness){floor}, in {f['seconds']:.2f} s"
        )
    soft = f"{f['soft_steps']} soft at T={s['temperature']:g}, dist {s['dist']}"
    if f["refine"] is not None:
        r = f["refine"]
        settled = "settled" if f["converged"] else "stopped at the step cap: raise --refine-steps"
        iou = f"{r['mean_best_iou_before']:.4f} -> {r['mean_best_iou_after']:.4f}"
        bpr = f"{r['bpr_before']:.4f} -> {r['bpr_after']:.4f}"
        steps = f"{f['refine_steps']} IoU steps, {settled}"
        phase = f"{soft}; {steps}: on the fitted boxes mean best IoU {iou}, BPR {bpr}"
    else:
        settled = "settled" if f["converged"] else "NOT settled: raise the step cap"
        phase = f"{soft}; {f['hard_steps']} hard, {settled}"
    return (
        f"learned ({f['objective']}): {f['steps']} steps ({phase}){floor} from the {s['init']} init "
        f"in {f['seconds']:.2f} s"
    )


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
    used = boxes[kept(boxes, report["boxes"]["min_px"])]
    label = name or re.sub(r" \(\w+\)", "", report["dataset"].get("name") or "boxes")
    label = label if len(label) <= 60 else label[:57] + "..."
    lines = ["mean best IoU:"]  # wrapped where the picture's width ends (about 88 characters)
    for k, v in sets.items():
        score = f"{k} {v['metrics']['mean_best_iou']:.3f}"
        if len(lines[-1]) + len(score) > 86:
            lines[-1] += ","
            lines.append(score)
        else:
            lines[-1] += (" " if lines[-1].endswith(":") else ", ") + score
    steps = f", {result.steps} steps" if result.steps else ""
    levels = f" on {s['levels']} levels" if s["levels"] > 1 else ""
    title = f"{label}: {s['anchors']} anchors{levels} at {s['image_size']} px, {result_name}"
    return plot_anchors(
        used.numpy(),
        (result.path if result.path is not None else result.anchors[None]).numpy(),
        image_size=s["image_size"],
        title="\n".join([title, *lines]),
        marker_sets={k: torch.tensor(v).numpy() for k, v in others.items()},
        path_labels=(start, result_name),
        note=f"{len(used):,} boxes\n{s['anchors']} anchors{steps}",
        levels=result.anchor_levels or None,  # several levels: coloured by level, strides marked
        strides=result.strides,
    )
