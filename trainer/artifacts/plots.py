"""Pictures of a run: the anchors moving over the box-shape distribution, and the loss curves.

`plot_anchors` follows Figure 2 of Zhong et al. (WACV 2020): box density in log w vs log h with
marginal histograms, each anchor's path from its initial shape to its latest one on top. All sizes
are pixels at the model's input size. Figures are drawn with the Agg canvas (no pyplot, no global
state) and returned as PNG bytes for the run's writer to store.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

_DPI = 110
_BINS_PER_OCTAVE = 12  # density bins per doubling of w or h, at most _MAX_BINS per axis
_MAX_BINS = 60
_DENSITY_CMAP = ListedColormap(colormaps["Greys"](np.linspace(0.18, 1.0, 256)))  # 1 box is visible
# Named comparison sets: shapes the anchors' circles never use, light and dark fills so each shows
# on both the pale and the dense parts of the density.
_SET_MARKERS = (
    {"marker": "s", "mfc": "white", "mec": "black", "mew": 1.2, "ms": 7},
    {"marker": "^", "mfc": "black", "mec": "white", "mew": 0.8, "ms": 8},
    {"marker": "D", "mfc": "gold", "mec": "black", "mew": 1.0, "ms": 6},
    {"marker": "v", "mfc": "deepskyblue", "mec": "black", "mew": 1.0, "ms": 8},
    {"marker": "P", "mfc": "white", "mec": "black", "mew": 1.0, "ms": 8},
)


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes; storing them (atomically) is the caller's business."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


def _pixel_ticks(lo: float, hi: float) -> list[float]:
    """Tick positions in pixels for a log axis over [lo, hi]: powers of 2, with 3, 6, 12... if few."""
    k0, k1 = math.floor(math.log2(lo)), math.ceil(math.log2(hi))
    lo, hi = lo * 1.04, hi / 1.04  # no tick right on an edge, where labels collide with the marginals
    ticks = [2.0**k for k in range(k0, k1 + 1) if lo <= 2.0**k <= hi]
    if len(ticks) < 3:
        ticks = sorted(t for k in range(k0, k1 + 1) for t in (2.0**k, 1.5 * 2.0**k) if lo <= t <= hi)
    return ticks


def _leading_digit(v: float) -> int:
    """The first significant digit of `v` > 0 (labels 2, 5, 20, 50... on a log loss axis)."""
    return int(round(v / 10.0 ** math.floor(math.log10(v) + 1e-9)))


def _anchor_colours(a: int) -> list[Any]:
    """One distinct colour per anchor: tab10 up to 10 anchors, then evenly spaced on turbo."""
    if a <= 10:
        return [colormaps["tab10"](k) for k in range(a)]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, a)]


# Each level's anchors in shades of its own colour, finest level first.
_LEVEL_CMAPS = ("Blues", "Oranges", "Greens", "Purples")


def _level_colours(levels: Sequence[int]) -> list[Any]:
    """Anchor k's colour: a shade of its level's colour, darker for the later anchors of a level."""
    out = []
    for k, level in enumerate(levels):
        mates = [j for j, other in enumerate(levels) if other == level]
        shade = 0.55 + 0.35 * mates.index(k) / max(1, len(mates) - 1)
        out.append(colormaps[_LEVEL_CMAPS[level % len(_LEVEL_CMAPS)]](shade))
    return out


def plot_anchors(
    boxes_wh: Any,
    anchor_paths: Any,
    *,
    image_size: int,
    true_shapes: Any = None,
    title: str | None = None,
    marker_sets: Mapping[str, Any] | None = None,
    path_labels: tuple[str, str] = ("init", "learned"),
    note: str | None = None,
    levels: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> bytes:
    """Draws box-shape density with the anchors' paths over it; returns the PNG.

    boxes_wh: [N, 2] box (w, h) in pixels at the input size; N may be 0 (anchors only).
    anchor_paths: [T, A, 2] anchor (w, h) in pixels at T snapshots, initial first, latest last
        (a single [A, 2] snapshot is accepted as T=1, drawn as end points only).
    image_size: the model's input size in pixels; axis limits are clipped to [1, 4 * image_size].
    true_shapes: optional [K, 2] known (w, h) in pixels, drawn as black crosses.
    marker_sets: optional named anchor sets {name: [K, 2] (w, h) pixels}, each drawn with its own
        marker and legend entry (e.g. a k-means or a published set to compare with).
    path_labels: legend names of the paths' start and end markers.
    note: the small text under the legend (default: counts of boxes, anchors and snapshots).
    levels, strides: each anchor's level index into `strides` (trainer.model.levels). With more
        than one level, anchors are coloured by level and each level's stride is marked as a
        square (stride x stride) with dashed lines in the margins; one level draws as without them.
    """
    boxes = np.asarray(boxes_wh, dtype=float).reshape(-1, 2)
    boxes = boxes[np.isfinite(boxes).all(1) & (boxes > 0).all(1)]
    paths = np.asarray(anchor_paths, dtype=float)
    if paths.ndim == 2:
        paths = paths[None]
    if paths.ndim != 3 or paths.shape[-1] != 2 or paths.shape[0] < 1:
        raise ValueError(f"anchor_paths must be [T, A, 2] with T >= 1, got {paths.shape}")
    truth = None if true_shapes is None else np.asarray(true_shapes, dtype=float).reshape(-1, 2)
    extra = {name: np.asarray(wh, dtype=float).reshape(-1, 2) for name, wh in (marker_sets or {}).items()}

    several = levels is not None and strides is not None and len(set(levels)) > 1
    marks = np.array([[s, s] for s in strides], dtype=float) if several else np.zeros((0, 2))
    pts = np.concatenate(
        [boxes, paths.reshape(-1, 2), marks, *extra.values()] + ([truth] if truth is not None else [])
    )
    pts = pts[np.isfinite(pts) & (pts > 0)]
    cap = max(4.0 * image_size, 4.0)  # limits cover every point with a margin, within [1, cap]
    lo = float(np.clip(pts.min() / 1.3, 1.0, cap)) if pts.size else 1.0
    hi = float(np.clip(pts.max() * 1.3, 1.0, cap)) if pts.size else cap / 4
    hi = min(cap, max(hi, 2.0 * lo))  # at least one octave, even if every point is the same or clipped
    lo = max(1.0, min(lo, hi / 2.0))
    edges = np.geomspace(lo, hi, min(_MAX_BINS, math.ceil(_BINS_PER_OCTAVE * math.log2(hi / lo))) + 1)

    fig = Figure(figsize=(7, 7))
    gs = fig.add_gridspec(2, 2, width_ratios=(4, 1), height_ratios=(1, 4), wspace=0.04, hspace=0.04)
    ax = fig.add_subplot(gs[1, 0])
    top = fig.add_subplot(gs[0, 0], sharex=ax)
    right = fig.add_subplot(gs[1, 1], sharey=ax)
    corner = fig.add_subplot(gs[0, 1])
    corner.axis("off")

    ax.set_xscale("log")
    ax.set_yscale("log")
    if len(boxes):
        counts, _, _ = np.histogram2d(boxes[:, 0], boxes[:, 1], bins=(edges, edges))
        density = np.ma.masked_equal(counts.T, 0)
        ax.pcolormesh(edges, edges, density, cmap=_DENSITY_CMAP, norm=LogNorm(1, max(2.0, counts.max())))
        top.hist(boxes[:, 0], bins=edges, color="0.65")
        right.hist(boxes[:, 1], bins=edges, color="0.65", orientation="horizontal")
    else:
        ax.text(0.5, 0.03, "no boxes yet", transform=ax.transAxes, ha="center", color="0.5")
        top.set_yticks([])
        right.set_xticks([])
    ax.plot([lo, hi], [lo, hi], ls=":", lw=0.8, color="0.7", zorder=1)  # w = h

    colours = _level_colours(levels) if several else _anchor_colours(paths.shape[1])
    moved = paths.shape[0] > 1  # one snapshot has no start distinct from its end
    for k, c in enumerate(colours):
        wk, hk = paths[:, k, 0], paths[:, k, 1]
        if moved:
            ax.plot(wk, hk, "-", color=c, lw=1.0, alpha=0.8, zorder=3)
            ax.plot(wk[0], hk[0], "o", mfc="none", mec=c, mew=1.3, ms=8, zorder=4)
        ax.plot(wk[-1], hk[-1], "o", color=c, mec="black", mew=0.7, ms=9, zorder=5)
        top.axvline(wk[-1], color=c, lw=1.2, alpha=0.9)
        right.axhline(hk[-1], color=c, lw=1.2, alpha=0.9)
    end = Line2D([], [], ls="", marker="o", color="0.45", mec="black", mew=0.7, ms=9, label=path_labels[1])
    start = Line2D([], [], ls="", marker="o", mfc="none", mec="0.3", mew=1.3, ms=8, label=path_labels[0])
    handles = [start, end] if moved else [end]
    if several:
        for level, stride in enumerate(strides):
            c = colormaps[_LEVEL_CMAPS[level % len(_LEVEL_CMAPS)]](0.75)
            ax.plot(stride, stride, "s", mfc="none", mec=c, mew=1.6, ms=11, zorder=4)
            top.axvline(stride, color=c, lw=1.0, ls="--")
            right.axhline(stride, color=c, lw=1.0, ls="--")
            n = list(levels).count(level)
            label = f"P{stride.bit_length() - 1}/{stride}: {n} anchor{'s' * (n != 1)}"
            handles.append(
                Line2D([], [], ls="", marker="o", color=c, mec="black", mew=0.7, ms=8, label=label)
            )
        handles.append(
            Line2D([], [], ls="", marker="s", mfc="none", mec="0.3", mew=1.4, ms=9, label="stride")
        )
    for (name, wh), style in zip(extra.items(), itertools.cycle(_SET_MARKERS), strict=False):
        ax.plot(wh[:, 0], wh[:, 1], ls="", zorder=6, **style)
        handles.append(Line2D([], [], ls="", label=name, **style))
    if truth is not None and len(truth):
        ax.plot(truth[:, 0], truth[:, 1], "x", color="black", ms=7, mew=1.6, zorder=6)
        handles.append(Line2D([], [], ls="", marker="x", color="black", ms=7, mew=1.6, label="true shapes"))
    size = 9 if len(handles) <= 3 else 8 if len(handles) <= 5 else 7
    crowded = len(handles) > 5  # levels add an entry each: packed from the top, clear of the note
    corner.legend(
        handles=handles,
        loc="upper center" if crowded else "center",
        frameon=False,
        fontsize=size,
        labelspacing=0.25 if crowded else 0.5,
        borderaxespad=0.0 if crowded else 0.5,
    )
    if note is None:
        (t, a), n = paths.shape[:2], len(boxes)
        note = f"{n} box{'es' * (n != 1)}\n{a} anchor{'s' * (a != 1)}, {t} snapshot{'s' * (t != 1)}"
    corner.text(0.5, 0.02, note, transform=corner.transAxes, ha="center", fontsize=7.5, color="0.35")

    ticks = _pixel_ticks(lo, hi)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(lambda v, _pos: f"{v:g}")
        axis.set_minor_locator(NullLocator())
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("box width w (px, log scale)")
    ax.set_ylabel("box height h (px, log scale)")
    top.tick_params(labelbottom=False, labelsize=7)
    right.tick_params(labelleft=False, labelsize=7)
    top.set_ylabel("boxes", fontsize=8)
    right.set_xlabel("boxes", fontsize=8)
    title = title if title is not None else f"anchors over the box distribution (input {image_size}px)"
    two_lines = "\n" in title  # a second line (e.g. each set's score) gets a smaller font and more room
    fig.suptitle(title, fontsize=10.5 if two_lines else 12)
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.08, top=0.91 if two_lines else 0.93)
    return _png(fig)


def plot_losses(
    history: Sequence[Mapping[str, Any]],
    *,
    title: str = "training losses",
    warmup_steps: int | None = None,
) -> bytes:
    """Plots each loss term against training step; returns the PNG.

    history: entries like {"step": 10, "total": 3.2, "xy": 0.5, ...}; every key but "step" is a
        curve (unitless loss value), drawn over the steps where it is present. "total" is thicker.
    warmup_steps: if given, a dashed vertical line at that step marks the end of the warm-up.
    The y axis is log-scaled when every plotted value is positive.
    """
    series: dict[str, list[tuple[float, float]]] = {}
    for entry in history:
        step = entry.get("step")
        for key, value in entry.items():
            if key == "step" or step is None or value is None:
                continue
            v = float(value)
            if math.isfinite(v):
                series.setdefault(key, []).append((float(step), v))
    keys = sorted(series, key=lambda k: k != "total")  # "total" first, others in order of appearance

    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    fig.suptitle(title)
    if not keys:
        ax.text(0.5, 0.5, "no steps yet", transform=ax.transAxes, ha="center", va="center", fontsize=14)
        ax.set(xticks=[], yticks=[])
        return _png(fig)

    others = itertools.cycle(colormaps["tab10"].colors)
    for key in keys:
        pts = np.array(sorted(series[key]))
        style = {"color": "black", "lw": 2.4, "zorder": 3} if key == "total" else {"color": next(others)}
        ax.plot(pts[:, 0], pts[:, 1], marker="o" if len(pts) == 1 else None, label=key, **style)
    values = [v for pts in series.values() for _, v in pts]
    if min(values) > 0:
        ax.set_yscale("log")
        decades = math.log10(max(values) / min(values))
        shown = range(2, 10) if decades < 1 else (2, 5) if decades <= 3 else ()  # minor labels
        ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:g}")
        ax.yaxis.set_minor_formatter(lambda v, _pos: f"{v:g}" if _leading_digit(v) in shown else "")
        ax.set_ylabel("loss (log scale)")
    else:
        ax.set_ylabel("loss")
    if warmup_steps is not None:
        ax.axvline(warmup_steps, ls="--", color="0.4", lw=1.2, label="end of warm-up")
    ax.set_xlabel("step")
    ax.grid(True, which="major", alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)  # never over data
    fig.tight_layout()
    return _png(fig)
