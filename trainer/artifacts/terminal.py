"""What the command line shows, for the trainer's commands and the service's alike (rich, no torch):
progress bars and the one progress line, dataset summaries, and the one anchors table (a row per
anchor, a column per set of them) that a run's result, a job's snapshots and a fit all print."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

COLUMNS = (
    TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
)  # fmt: skip


class FetchBar:
    """A bar for the objects of an s3:// dataset arriving in the local cache: (done, total) calls."""

    def __init__(self, progress: Progress):
        self.progress, self.task = progress, None

    def __call__(self, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task("fetching dataset", total=total, info="objects")
        self.progress.update(self.task, completed=done, total=total)


class Bar:
    """Turns the trainer's progress events into a rich progress bar and per-epoch lines."""

    def __init__(self, progress: Progress):
        self.progress, self.task = progress, None
        self.fetch = FetchBar(progress)

    def __call__(self, event: dict) -> None:
        kind = event["kind"]
        if kind == "fetch":
            self.fetch(event["done"], event["total"])
        elif kind == "start":
            for line in event.get("pretrained") or ():
                self.progress.console.print(line, markup=False, highlight=False)
            for warning in event.get("warnings") or ():
                self.progress.console.print(
                    f"warning: {warning}", style="yellow", markup=False, highlight=False
                )
            for split, summary in event["dataset"].items():
                print_dataset_summary(
                    self.progress.console, summary | {"name": f"{split}: {summary['name']}"}
                )
            self.task = self.progress.add_task(
                "training", total=event["total"], completed=event["step"], info=""
            )
        elif kind == "step":
            info = progress_line(event["phase"], loss=event["losses"]["total"])
            self.progress.update(self.task, completed=event["step"], info=info)
        elif kind == "epoch":
            m = event["metrics"]
            ev = m["eval"] or {}
            ap50 = f"AP50 {ev['ap50']:.3f}  AP {ev['ap']:.3f}" if ev else ""
            loss = m["losses"].get("total", float("nan"))
            self.progress.console.print(
                f"epoch {event['epoch']}/{event['epochs']}  loss {loss:.3f}  {ap50}  "
                f"{m['images_per_s']:.0f} img/s"
            )


def progress_line(
    phase: str | None,
    *,
    loss: float | None = None,
    epoch: int | None = None,
    epochs: int | None = None,
    images_per_s: float | None = None,
) -> str:
    """The one progress line: "soft   epoch 2/10 412 img/s", "hard   loss   1.234"; what is None is
    left out. The training bar and the service's `submit --wait` / `status` print it alike."""
    parts = [f"{phase or '':6s}"]
    if loss is not None:
        parts.append(f"loss {loss:7.3f}")
    if epoch is not None and epochs is not None:
        parts.append(f"epoch {epoch}/{epochs}")
    if images_per_s:
        parts.append(f"{images_per_s:.0f} img/s")
    return " ".join(parts)


def wh(pairs: list[list[float]], digits: str = ".1f") -> list[str]:
    """(w, h) pairs as "w x h" cells of an anchors table."""
    return [f"{w:{digits}} x {h:{digits}}" for w, h in pairs]


def anchor_table(title: str, columns: dict[str, list[str]], bold: str | None = None) -> Table:
    """The one anchors table: a row per anchor (numbered), a column per set (`columns`: heading ->
    one cell per anchor, shorter sets leave their cells empty); `bold` names the column to stress."""
    table = Table(title=title)
    table.add_column("#", justify="right")
    for name in columns:
        table.add_column(name, justify="right", style="bold" if name == bold else None)
    for k in range(max((len(cells) for cells in columns.values()), default=0)):
        table.add_row(str(k), *(cells[k] if k < len(cells) else "" for cells in columns.values()))
    return table


def result_anchors(result: dict) -> Table:
    """A finished run's anchors (result.json): where they started and where they were learned to."""
    a = result["anchors"]
    return anchor_table(
        f"anchors (w x h, pixels at the {result['image_size']} px input)",
        level_column(result)
        | {"init": wh(a["init"]), "learned": wh(a["final"]), "grid cells": wh(a["final_cells"], ".2f")},
    )


def level_column(doc: dict) -> dict[str, list[str]]:
    """{"level": "P3/8" per anchor} for a run on several levels (result.json, a snapshot), else {}."""
    strides, levels = doc.get("strides"), doc.get("levels")
    if not strides or not levels or len(strides) < 2:
        return {}
    return {"level": [f"P{strides[k].bit_length() - 1}/{strides[k]}" for k in levels]}


def snapshot_anchors(snapshots: list[dict]) -> Table:
    """A job's anchors from its snapshots (API JSON): each at its start and now, with the latest fit."""
    first, last = snapshots[0], snapshots[-1]
    fit = last.get("fit_dataset") or last["fit"]
    iou = f"  mean best IoU {fit['mean_best_iou']:.3f}" if fit.get("mean_best_iou") is not None else ""
    return anchor_table(
        f"anchors at step {last['step']}/{last['total_steps']} ({last['phase']}){iou}",
        level_column(last)
        | {
            "start (px)": wh(first["anchors"]),
            "now (px)": wh(last["anchors"]),
            "grid cells": wh(last["anchors_cells"], ".2f"),
        },
    )


def fit_table(result: dict) -> Table:
    fit = result["fit"]
    table = Table(title="how well the anchors fit the training boxes")
    table.add_column("metric")
    table.add_column("init", justify="right")
    table.add_column("learned", justify="right")
    table.add_column("meaning")
    from trainer.model.anchors import FIT_METRICS  # torch: only the commands that train import it

    for key, text in FIT_METRICS.items():
        table.add_row(key, f"{fit['init'][key]:.3f}", f"{fit['final'][key]:.3f}", text)
    syn = result.get("synthetic") or {}
    if syn.get("log_error_final") is not None:
        table.add_row(
            "log_error", f"{syn['log_error_init']:.3f}", f"{syn['log_error_final']:.3f}",
            "mean |log| error to the true shapes, best matching (0.10 is about 10 %)",
        )  # fmt: skip
    return table


def print_dataset_summary(console: Console, summary: dict, extra: dict[str, str] | None = None) -> None:
    """Prints `DetectionSet.summary()` as one table; `extra` rows (label: text) come last."""
    table = Table(title=f"dataset {summary['name']}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("format", summary["format"])
    table.add_row("images", f"{summary['images']} ({summary['images_without_boxes']} without boxes)")
    ignored = f"crowd {summary['crowd']}, difficult {summary['difficult']}: ignored in training"
    table.add_row("boxes", f"{summary['boxes']} ({ignored})")
    top = sorted(summary["per_class"].items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{name} {n}" for name, n in top[:6]) + (
        f", +{len(top) - 6} more" if len(top) > 6 else ""
    )
    table.add_row("classes", f"{summary['classes']}: {shown}")
    if summary["box_size_px"]:
        z = summary["box_size_px"]
        table.add_row(
            "box size (original px)",
            f"w {z['min_w']:g}-{z['max_w']:g}, h {z['min_h']:g}-{z['max_h']:g}, "
            f"median {z['median_w']:g} x {z['median_h']:g}",
        )
    bad = summary["bad_data"] or {}  # None for the synthetic set, which has none by construction
    counts = {k.replace("_", " "): v for k, v in bad.items() if k != "problems" and v}
    table.add_row("bad data", ", ".join(f"{k} {v}" for k, v in counts.items()) or "none")
    for problem in bad.get("problems", [])[:5]:
        table.add_row("", f"[dim]{problem}[/dim]")
    for label, text in (extra or {}).items():
        table.add_row(label, text)
    console.print(table)
